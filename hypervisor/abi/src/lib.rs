//! The Bulkhead ABI: everything the hypervisor, the guests and xtask must agree on.
//!
//! - [`hypercall`]: the hypercall numbers, register convention and error codes (guest ↔ hypervisor).
//! - [`boot_info`]: the block the hypervisor hands a unikernel at entry.
//! - [`manifest`]: the compiled system description (xtask → hypervisor), a fixed layout
//!   read by [`wire`].
//! - [`bundle`]: the boot bundle that carries the manifest and the guest images.
//! - [`channel`]: the shared-memory layout of channels between qubes.
//! - [`label`]: Qubes' label colours.
//! - [`proto`] (feature `proto`): the postcard messages qubes exchange over channels.
//! - [`gui`] (feature `proto`): the GUI protocol between clients and the gui qube.
//! - [`block`] (feature `proto`): the block protocol between a client qube and the storage
//!   qube (volumes read and written through a channel's bulk area).
//! - [`disk`] (feature `proto`): the layout of the storage qube's disk (its volume table),
//!   written by xtask and read by the storage qube.
//! - [`io_ports`]: the I/O port ranges a unikernel qube may own, and those none may.
//! - [`guest_pci`]: the virtual PCI devices of a Linux qube (host bridge, channel devices).
//! - [`bounded`]: fixed-capacity vector, string and ring, the only collections the
//!   hypervisor uses.
//! - [`wire`]: the fixed little-endian encoding the manifest is written and read with.
//!
//! Without the `proto` feature the crate has no dependencies: it is what the hypervisor
//! image links.
//!
//! Every layout here is versioned; a reader checks the version before it trusts anything else.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

#[cfg(feature = "proto")]
pub mod block;
pub mod boot_info;
pub mod bounded;
pub mod bundle;
pub mod channel;
#[cfg(feature = "proto")]
pub mod disk;
pub mod guest_pci;
#[cfg(feature = "proto")]
pub mod gui;
pub mod hypercall;
pub mod io_ports;
pub mod label;
pub mod manifest;
#[cfg(feature = "proto")]
pub mod proto;
#[cfg(feature = "proto")]
pub mod qrexec;
pub mod wire;
