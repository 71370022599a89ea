//! The commands' command lines (Qubes' names and main options) and their help texts.

use crate::qrexec::names::{valid_qube, valid_target};
use crate::services::open_in_vm::{COMMAND_MAX, DEFAULT_COMMAND};
use std::path::PathBuf;

/// Why a command line was not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Usage {
    /// `-h` / `--help`.
    Help,
    Error(String),
}

fn error<T>(why: impl Into<String>) -> Result<T, Usage> {
    Err(Usage::Error(why.into()))
}

fn qube(name: &str) -> Result<String, Usage> {
    if valid_qube(name) {
        return Ok(name.to_string());
    }
    error(format!(
        "{}: not a qube's name",
        crate::log::printable(name, 40)
    ))
}

/// Splits `args` into the options before the first other word (or `--`) and the rest.
fn split(args: &[String]) -> (&[String], &[String]) {
    let end = args
        .iter()
        .position(|a| a == "--" || !a.starts_with('-') || a == "-")
        .unwrap_or(args.len());
    let rest = match args.get(end) {
        Some(a) if a == "--" => &args[end + 1..],
        _ => &args[end..],
    };
    (&args[..end], rest)
}

/// Options `-x`, `-xy` (flags only) and `--name[=value]`, one at a time.
fn options(opts: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for o in opts {
        match o.strip_prefix('-') {
            Some(short) if !short.starts_with('-') && short.len() > 1 => {
                out.extend(short.chars().map(|c| format!("-{c}")));
            }
            _ => out.push(o.clone()),
        }
    }
    out
}

pub const RUN_HELP: &str = "\
usage: qvm-run [-p] [-q] [--no-colour-output] [--[no-]filter-escape-chars] VMNAME COMMAND...
       qvm-run --dispvm[=DISPVM] [-p] ... COMMAND...
Runs COMMAND (its words joined with spaces) with /bin/sh in the qube VMNAME (service
qubes.VMShell; the policy decides).
  -p, --pass-io              pass stdin, stdout and stderr; exit with the command's status
                             (without it: print that it runs, discard its output)
  --dispvm[=DISPVM]          in a new disposable (target @dispvm, or @dispvm:DISPVM)
  --no-colour-output         do not mark the qube's output red on a terminal
  --filter-escape-chars      make the output safe for a terminal (the default on one)
  --no-filter-escape-chars   pass the output as it is, escape sequences included
  -q, --quiet                say less
  -h, --help                 this help";

/// `qvm-run`'s command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunArgs {
    /// A qube, `@dispvm` or `@dispvm:NAME`.
    pub target: String,
    pub command: String,
    pub pass_io: bool,
    pub colour: bool,
    /// `Some` when given; the default is "when the output is a terminal".
    pub filter: Option<bool>,
    pub quiet: bool,
}

pub fn parse_run(args: &[String]) -> Result<RunArgs, Usage> {
    let (opts, rest) = split(args);
    let (mut pass_io, mut colour, mut filter, mut quiet) = (false, true, None, false);
    let mut dispvm: Option<Option<String>> = None;
    for o in options(opts) {
        match o.as_str() {
            "-p" | "--pass-io" => pass_io = true,
            "-q" | "--quiet" => quiet = true,
            "--no-colour-output" | "--no-color-output" => colour = false,
            "--filter-escape-chars" => filter = Some(true),
            "--no-filter-escape-chars" => filter = Some(false),
            "--dispvm" => dispvm = Some(None),
            "-h" | "--help" => return Err(Usage::Help),
            o => match o.strip_prefix("--dispvm=") {
                Some(name) => dispvm = Some(Some(qube(name)?)),
                None => return error(format!("unknown option {}", crate::log::printable(o, 40))),
            },
        }
    }
    let (target, words) = match dispvm {
        Some(None) => ("@dispvm".to_string(), rest),
        Some(Some(name)) => (format!("@dispvm:{name}"), rest),
        None => match rest.split_first() {
            Some((vm, words)) if valid_target(vm) && vm != "@default" => (vm.clone(), words),
            Some((vm, _)) => {
                return error(format!("{}: not a qube", crate::log::printable(vm, 40)));
            }
            None => return error("no VMNAME"),
        },
    };
    let command = words.join(" ");
    if command.trim().is_empty() {
        return error("no COMMAND");
    }
    Ok(RunArgs {
        target,
        command,
        pass_io,
        colour,
        filter,
        quiet,
    })
}

pub const COPY_HELP: &str = "\
usage: qvm-copy [--without-progress] FILE...
       qvm-copy-to-vm [--without-progress] VMNAME FILE...
       qvm-move [--without-progress] FILE...
       qvm-move-to-vm [--without-progress] VMNAME FILE...
Copies files and directories (recursively) to another qube, where they land in
~/QubesIncoming/<this qube>/ (service qubes.Filecopy). qvm-copy and qvm-move let the policy
ask where to (target @default). qvm-move removes the sources once the receiver said that
everything arrived. Symbolic links, devices, fifos and sockets are refused before anything
is sent.
  -h, --help   this help";

/// The file copy commands' command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyArgs {
    /// A qube or `@default`.
    pub target: String,
    pub files: Vec<PathBuf>,
    /// `qvm-move*`: remove the sources after success.
    pub remove: bool,
}

pub fn parse_copy(name: &str, args: &[String]) -> Result<CopyArgs, Usage> {
    let (opts, rest) = split(args);
    for o in options(opts) {
        match o.as_str() {
            "--without-progress" => {}
            "-h" | "--help" => return Err(Usage::Help),
            o => return error(format!("unknown option {}", crate::log::printable(o, 40))),
        }
    }
    let (target, files) = match name.ends_with("-to-vm") {
        true => match rest.split_first() {
            Some((vm, files)) => (qube(vm)?, files),
            None => return error("no VMNAME"),
        },
        false => ("@default".to_string(), rest),
    };
    if files.is_empty() {
        return error("no FILE");
    }
    Ok(CopyArgs {
        target,
        files: files.iter().map(PathBuf::from).collect(),
        remove: name.starts_with("qvm-move"),
    })
}

pub const OPEN_HELP: &str = "\
usage: qvm-open-in-dvm [--command CMD] FILE
Copies FILE into a new disposable (service qubes.OpenInVM) and runs CMD there with its
path as the last argument (default: cat); CMD's output comes back here, its status is
this command's. The disposable powers off when CMD is done.
  --command CMD   the command line to open the file with (run by /bin/sh)
  -h, --help      this help";

/// `qvm-open-in-dvm`'s command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenArgs {
    pub command: String,
    pub file: PathBuf,
}

pub fn parse_open(args: &[String]) -> Result<OpenArgs, Usage> {
    let mut command = DEFAULT_COMMAND.to_string();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "-h" | "--help" => return Err(Usage::Help),
            "--command" => match args.get(i + 1) {
                Some(c) => {
                    command = c.clone();
                    i += 1;
                }
                None => return error("--command needs a value"),
            },
            "--" => {
                i += 1;
                break;
            }
            o if o.starts_with("--command=") => command = o["--command=".len()..].to_string(),
            o if o.starts_with('-') && o != "-" => {
                return error(format!("unknown option {}", crate::log::printable(o, 40)));
            }
            _ => break,
        }
        i += 1;
    }
    let file = match &args[i.min(args.len())..] {
        [file] => PathBuf::from(file),
        [] => return error("no FILE"),
        _ => return error("one FILE at a time"),
    };
    if command.trim().is_empty() || command.len() > COMMAND_MAX {
        return error(format!("the command must be 1 to {COMMAND_MAX} bytes"));
    }
    Ok(OpenArgs { command, file })
}

/// The help of an admin command.
pub fn admin_help(name: &str) -> String {
    let (operands, what) = match name {
        "qvm-ls" => ("[VMNAME...]", "Lists the qubes (all, or those named)"),
        "qvm-start" => ("VMNAME...", "Starts the qubes"),
        "qvm-shutdown" => ("VMNAME...", "Shuts the qubes down cleanly"),
        _ => ("VMNAME...", "Stops the qubes at once"),
    };
    format!(
        "usage: {name} {operands}\n{what}: one call of {} to the admin qube (@adminvm) per \
         qube, the qube's name as the argument.\n  -h, --help   this help",
        admin_service(name)
    )
}

/// The admin API service of an admin command.
pub fn admin_service(name: &str) -> &'static str {
    match name {
        "qvm-ls" => "admin.vm.List",
        "qvm-start" => "admin.vm.Start",
        "qvm-shutdown" => "admin.vm.Shutdown",
        _ => "admin.vm.Kill",
    }
}

/// An admin command's qubes (`qvm-ls` may name none: all of them).
pub fn parse_admin(name: &str, args: &[String]) -> Result<Vec<String>, Usage> {
    let (opts, rest) = split(args);
    if let Some(o) = options(opts).first() {
        return match o.as_str() {
            "-h" | "--help" => Err(Usage::Help),
            o => error(format!("unknown option {}", crate::log::printable(o, 40))),
        };
    }
    if rest.is_empty() && name != "qvm-ls" {
        return error("no VMNAME");
    }
    rest.iter().map(|q| qube(q)).collect()
}
