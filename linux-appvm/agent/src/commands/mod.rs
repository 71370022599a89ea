//! The qrexec commands, Qubes' names and main options: the agent binary called by one of
//! [`NAMES`] (links in the initramfs) or `bulkhead-agent <name> ...`. Each is one call
//! through the daemon's socket (`crate::qrexec::client`):
//!
//! - `qvm-run` ([`run`]): `qubes.VMShell` in a qube or a disposable;
//! - `qvm-copy`, `qvm-copy-to-vm`, `qvm-move`, `qvm-move-to-vm` ([`copy`]): `qubes.Filecopy`;
//! - `qvm-open-in-dvm` ([`open`]): `qubes.OpenInVM` in a disposable;
//! - `qvm-ls`, `qvm-start`, `qvm-shutdown`, `qvm-kill` ([`admin`]): `admin.vm.*` to the
//!   admin qube.
//!
//! Exit status: the call's exit code ([`client::exit_status`]); [`EXIT_REFUSED`] (126, as
//! Qubes' `qrexec-client-vm`) when the call was refused, after `Request refused` and the
//! reason on stderr; [`EXIT_FAILED`] when it could not be made or broke off; [`EXIT_USAGE`]
//! for a bad command line. Whatever comes back from another qube is made safe for a
//! terminal when it goes to one ([`output`]).

pub mod admin;
pub mod args;
pub mod copy;
pub mod open;
pub mod output;
pub mod run;

#[cfg(test)]
mod args_tests;

use crate::config::Settings;
use crate::qrexec::client::{self, Call, Opened};
use std::io::{Read, Write};
use std::path::PathBuf;

/// The names the agent answers to as a command.
pub const NAMES: &[&str] = &[
    "qvm-copy",
    "qvm-copy-to-vm",
    "qvm-kill",
    "qvm-ls",
    "qvm-move",
    "qvm-move-to-vm",
    "qvm-open-in-dvm",
    "qvm-run",
    "qvm-shutdown",
    "qvm-start",
];

/// The call could not be made, or broke off.
pub const EXIT_FAILED: u8 = 1;
/// A bad command line.
pub const EXIT_USAGE: u8 = 2;
/// The call was refused (Qubes' `qrexec-client-vm` status).
pub const EXIT_REFUSED: u8 = 126;

/// What a command talks to: the daemon's socket, and its own standard streams.
pub struct Context<'a> {
    /// The daemon's socket (`crate::qrexec::SOCKET_PATH`).
    pub socket: PathBuf,
    /// Whether this qube has a qrexec channel at all (for the message when the daemon
    /// cannot be reached).
    pub has_channel: bool,
    pub stdin: Box<dyn Read + Send>,
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
    /// Whether stdout and stderr are terminals (output from other qubes going there is then
    /// made safe, and `qvm-run` marks it red).
    pub tty: [bool; 2],
}

/// Runs the command `name` (one of [`NAMES`]) with `args`; its exit status, `None` for a
/// name that is not one.
pub fn main(name: &str, args: &[String], settings: &Settings) -> Option<u8> {
    use std::io::IsTerminal;
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let mut ctx = Context {
        socket: PathBuf::from(crate::qrexec::SOCKET_PATH),
        has_channel: settings.qrexec_channel.is_some(),
        stdin: Box::new(std::io::stdin()),
        tty: [out.is_terminal(), err.is_terminal()],
        stdout: &mut out,
        stderr: &mut err,
    };
    run_named(name, args, &mut ctx)
}

/// [`main`] with the streams and socket of `ctx`.
pub fn run_named(name: &str, args: &[String], ctx: &mut Context<'_>) -> Option<u8> {
    let status = match name {
        "qvm-run" => run::main(args, ctx),
        "qvm-copy" | "qvm-copy-to-vm" | "qvm-move" | "qvm-move-to-vm" => {
            copy::main(name, args, ctx)
        }
        "qvm-open-in-dvm" => open::main(args, ctx),
        "qvm-ls" | "qvm-start" | "qvm-shutdown" | "qvm-kill" => admin::main(name, args, ctx),
        _ => return None,
    };
    let _ = ctx.stdout.flush();
    Some(status)
}

impl Context<'_> {
    /// Opens `service+argument` in `target`: the target it runs in and the call, or the
    /// exit status after saying why not.
    pub fn open(
        &mut self,
        prog: &str,
        service: &str,
        argument: &str,
        target: &str,
    ) -> Result<(String, Call), u8> {
        match client::open(&self.socket, service, argument, target) {
            Ok(Opened::Accepted { target, call }) => Ok((target, call)),
            Ok(Opened::Refused(reason)) => {
                let _ = writeln!(self.stderr, "Request refused: {reason}");
                Err(EXIT_REFUSED)
            }
            Err(why) => {
                let _ = writeln!(self.stderr, "{prog}: {why}");
                if !self.has_channel {
                    let _ = writeln!(
                        self.stderr,
                        "{prog}: this qube has no qrexec channel (no bulkhead.qrexec= on its \
                         kernel command line): the system has no admin qube"
                    );
                }
                Err(EXIT_FAILED)
            }
        }
    }

    /// The exit status for a call's end, after saying why it failed.
    pub fn end_status(&mut self, prog: &str, end: client::Output) -> u8 {
        match end {
            client::Output::Exit(code) => client::exit_status(code),
            client::Output::Failed(why) => {
                let why = crate::log::printable(&why, 200);
                let _ = writeln!(self.stderr, "{prog}: the call failed: {why}");
                EXIT_FAILED
            }
            _ => EXIT_FAILED,
        }
    }

    /// Prints a usage problem (or the help, to stdout); the status.
    pub fn usage(&mut self, usage: args::Usage, help: &str) -> u8 {
        match usage {
            args::Usage::Help => {
                let _ = writeln!(self.stdout, "{help}");
                0
            }
            args::Usage::Error(why) => {
                let first = help.lines().next().unwrap_or_default();
                let _ = writeln!(self.stderr, "{why}\n{first}");
                EXIT_USAGE
            }
        }
    }
}
