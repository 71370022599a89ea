//! `cargo xtask qvm`: Qubes' `qvm-*` commands from the host, while `cargo xtask run` runs a
//! system whose admin qube owns COM2. QEMU serves that serial port on a Unix socket
//! ([`default_socket`]); the admin qube reads it as the host's console, and the host calls
//! like Qubes' dom0, without policy (docs/qrexec.md, "From the host").
//!
//! [`connect`] starts a session, [`call::run`] makes one call on it; the scenario
//! `qrexec-host` uses both directly.

pub mod call;
mod conn;
#[cfg(test)]
mod tests;

use anyhow::Result;
use bulkhead_abi::io_ports::PortRange;
use bulkhead_abi::manifest::Manifest;
use bulkhead_abi::qrexec::Refusal;
use bulkhead_abi::qrexec::host_console::COM2;
use call::{Ending, Request};
use clap::{Args, Subcommand};
pub use conn::Conn;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the admin qube may take to answer the hello.
pub const HELLO_WAIT: Duration = Duration::from_secs(10);
/// How long a call may wait to be accepted: the admin qube may start its target first (it
/// gives up itself after `bulkhead_relay::START_TIMEOUT_MS`, 120 s).
pub const ACCEPT_WAIT: Duration = Duration::from_secs(150);
/// Unix socket paths are limited to 108 bytes, the final NUL included.
const SOCKET_PATH_MAX: usize = 107;

#[derive(Args)]
pub struct QvmArgs {
    /// The host console's socket [default: target/bulkhead/qvm.sock, where `cargo xtask run`
    /// puts it].
    #[arg(long, value_name = "PATH", global = true)]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    cmd: QvmCmd,
}

#[derive(Subcommand)]
enum QvmCmd {
    /// List the qubes (`qvm-ls`; admin.vm.List).
    Ls,
    /// Run a command in a qube and print its output (`qvm-run --pass-io`; qubes.VMShell):
    /// exits with the command's exit code.
    Run {
        /// Print the command's output (always so here; accepted for Qubes' habits).
        #[arg(short = 'p', long)]
        pass_io: bool,
        /// Run it in a new disposable of VMNAME (`@dispvm:VMNAME`), destroyed afterwards.
        #[arg(long)]
        dispvm: bool,
        /// The qube.
        #[arg(value_name = "VMNAME")]
        vm: String,
        /// The command line, given to the qube's shell.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Start a qube (`qvm-start`; admin.vm.Start).
    Start {
        #[arg(value_name = "VMNAME")]
        vm: String,
    },
    /// Ask a qube to shut down, killing it if it has not after 30 s (`qvm-shutdown`;
    /// admin.vm.Shutdown).
    Shutdown {
        #[arg(value_name = "VMNAME")]
        vm: String,
    },
    /// Stop a qube at once (`qvm-kill`; admin.vm.Kill).
    Kill {
        #[arg(value_name = "VMNAME")]
        vm: String,
    },
}

/// The exit status `cargo xtask qvm` ends with when it is not 0 (the error says nothing
/// more: the call's output and any refusal were printed).
#[derive(Debug)]
pub struct ExitStatus(pub u8);

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for ExitStatus {}

/// Runs `cargo xtask qvm ...`.
pub fn verb(args: QvmArgs) -> Result<()> {
    let socket = args.socket.unwrap_or_else(default_socket);
    let (service, argument, target, stdin) = match &args.cmd {
        QvmCmd::Ls => ("admin.vm.List", "", "@adminvm".to_string(), String::new()),
        QvmCmd::Run {
            dispvm,
            vm,
            command,
            pass_io: _,
        } => {
            let target = match dispvm {
                true => format!("@dispvm:{vm}"),
                false => vm.clone(),
            };
            ("qubes.VMShell", "", target, command.join(" ") + "\n")
        }
        QvmCmd::Start { vm } => (
            "admin.vm.Start",
            vm.as_str(),
            "@adminvm".into(),
            String::new(),
        ),
        QvmCmd::Shutdown { vm } => (
            "admin.vm.Shutdown",
            vm.as_str(),
            "@adminvm".into(),
            String::new(),
        ),
        QvmCmd::Kill { vm } => (
            "admin.vm.Kill",
            vm.as_str(),
            "@adminvm".into(),
            String::new(),
        ),
    };
    let request = Request {
        service,
        argument,
        target: &target,
    };
    let mut conn = connect(&socket)?;
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let (_, ending) = call::run(
        &mut conn,
        1,
        &request,
        stdin.as_bytes(),
        &mut out,
        &mut err,
        ACCEPT_WAIT,
    )?;
    match ending {
        Ending::Exited(0) => Ok(()),
        Ending::Exited(code) => Err(ExitStatus(exit_status(code)).into()),
        Ending::Refused(reason) => {
            eprintln!("Request refused ({})", refusal_text(reason));
            Err(ExitStatus(1).into())
        }
        Ending::Aborted => anyhow::bail!("the call was aborted"),
    }
}

/// Connects to the admin qube's console at `socket` and starts a session.
pub fn connect(socket: &Path) -> Result<Conn> {
    let mut conn = Conn::connect(socket)?;
    conn.hello(HELLO_WAIT)?;
    Ok(conn)
}

/// Where `cargo xtask run` has QEMU serve the host console: `target/bulkhead/qvm.sock`, or,
/// when that path is too long for a Unix socket, a name in the temporary folder made from
/// the workspace's path (the same for `run` and `qvm`).
pub fn default_socket() -> PathBuf {
    let path = crate::bundle::out_dir().join("qvm.sock");
    if path.as_os_str().len() <= SOCKET_PATH_MAX {
        return path;
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    crate::workspace_root().hash(&mut h);
    std::env::temp_dir().join(format!("bulkhead-qvm-{:016x}.sock", h.finish()))
}

/// Whether the system's admin qube owns all of COM2's ports (then it drives the host
/// console, and QEMU gets a second serial port for it).
pub fn admin_owns_com2(manifest: &Manifest) -> bool {
    let Some(admin) = manifest.qubes.iter().position(|q| q.admin) else {
        return false;
    };
    let owned: Vec<PortRange> = manifest
        .ports
        .iter()
        .filter(|p| usize::from(p.qube) == admin)
        .map(|p| p.ports)
        .collect();
    PortRange::covers(&owned, COM2, 8)
}

/// What `Request refused (...)` says.
pub fn refusal_text(reason: Refusal) -> &'static str {
    match reason {
        Refusal::Denied => "denied by the policy",
        Refusal::UserRefused => "refused by the user",
        Refusal::Malformed => "malformed: no such qube, or not a disposable",
        Refusal::Unavailable => "the target cannot run it now",
        Refusal::Busy => "too many calls open",
    }
}

/// A call's exit code as a process's status: 0 to 255 as they are, a signal (negative)
/// as a shell shows it (128 + N), anything larger 255 (never 0 by wrapping).
pub fn exit_status(code: i32) -> u8 {
    match code {
        0..=255 => code as u8,
        i32::MIN..0 => 128u8.saturating_add(code.unsigned_abs().min(127) as u8),
        _ => 255,
    }
}
