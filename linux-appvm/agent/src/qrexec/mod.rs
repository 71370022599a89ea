//! qrexec in a Linux qube (`docs/qrexec.md`, protocol `bulkhead_abi::qrexec`): the daemon
//! on the channel `<qube>.qrexec` to the admin qube, which serves the calls other qubes
//! make to this one and carries the calls this qube's commands make.
//!
//! - [`core`]: the call table, flow control ([`flow`]) and every message of the admin qube,
//!   without I/O (host-tested, fuzzed);
//! - [`daemon`]: the core with the services this qube serves ([`served`]: their pipes) and
//!   the commands' connections ([`client_end`]), over any transport;
//! - [`run`]: the daemon's thread on the channel device and the socket;
//! - [`wire`]: the framing between the commands and the daemon; [`client`]: the commands'
//!   side of it;
//! - [`names`]: qube names, sources and targets.
//!
//! Numbering (`bulkhead_abi::qrexec::INCOMING_BASE`): this qube numbers its calls from
//! [`core::FIRST_SOURCE_CALL`] (1) up, below 2^31; the admin qube numbers the calls it
//! brings (`Incoming`) from 2^31 up, so that an `Io` names one call only.

pub mod client;
mod client_end;
pub mod core;
pub mod daemon;
pub mod flow;
pub mod names;
pub mod run;
mod served;
pub mod wire;

#[cfg(test)]
mod core_proptests;
#[cfg(test)]
mod core_tests;
#[cfg(test)]
mod sim_admin;
#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod sim_world;

/// Where the commands reach the daemon.
pub const SOCKET_PATH: &str = "/run/bulkhead/qrexec.sock";
