//! `qvm-open-in-dvm [--command CMD] FILE`: `qubes.OpenInVM` in a new disposable
//! (`@dispvm`). The call's stdin is the command line (length-prefixed) and a file copy
//! stream of FILE alone (`services::open_in_vm`); what the command prints comes back here,
//! made safe for a terminal, and its status is this command's. Changes made to the file
//! in the disposable do not come back.

use super::args::{OPEN_HELP, parse_open};
use super::output::Printer;
use super::{Context, EXIT_FAILED};
use crate::log::printable;
use crate::qrexec::client::Output;
use crate::services::{filecopy, open_in_vm};

/// Runs `qvm-open-in-dvm ARGS`; the exit status.
pub fn main(args: &[String], ctx: &mut Context<'_>) -> u8 {
    const PROG: &str = "qvm-open-in-dvm";
    let args = match parse_open(args) {
        Ok(a) => a,
        Err(u) => return ctx.usage(u, OPEN_HELP),
    };
    let plan = match filecopy::plan(std::slice::from_ref(&args.file)) {
        Ok(p) if p.summary().dirs == 0 => p,
        Ok(_) => {
            let file = args.file.display();
            let _ = writeln!(
                ctx.stderr,
                "{PROG}: {file}: a folder; only a file can be opened"
            );
            return EXIT_FAILED;
        }
        Err(e) => {
            let _ = writeln!(ctx.stderr, "{PROG}: {}", printable(&e.to_string(), 400));
            return EXIT_FAILED;
        }
    };
    let (_, mut call) = match ctx.open(PROG, "qubes.OpenInVM", "", "@dispvm") {
        Ok(opened) => opened,
        Err(status) => return status,
    };
    let Some(mut stdin) = call.stdin() else {
        return EXIT_FAILED;
    };
    let command = args.command;
    std::thread::spawn(move || {
        let sent = open_in_vm::write_command(&mut stdin, &command)
            .map_err(filecopy::SendError::Write)
            .and_then(|()| plan.send(&mut stdin));
        if sent.is_ok() {
            let _ = stdin.close();
        }
    });
    let mut printer = Printer::new(ctx.tty, [false; 2]);
    let end = call.finish(|piece| match piece {
        Output::Stdout(b) => printer.print(0, ctx.stdout, &b),
        Output::Stderr(b) => printer.print(1, ctx.stderr, &b),
        _ => {}
    });
    printer.finish(ctx.stdout, ctx.stderr);
    ctx.end_status(PROG, end)
}
