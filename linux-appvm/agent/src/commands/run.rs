//! `qvm-run`: a command line run by `/bin/sh` in another qube (`qubes.VMShell`). As Qubes'
//! does, it sends `COMMAND; exit` and a newline as the first line of the shell's stdin;
//! with `-p` its own stdin follows and the shell's output comes back, otherwise the output
//! is discarded and it says `Running 'COMMAND' on VMNAME`. Either way it waits for the end
//! and exits with the command's status.

use super::Context;
use super::args::{RUN_HELP, parse_run};
use super::output::Printer;
use crate::log::printable;
use crate::qrexec::client::Output;
use std::io::Write;

/// Runs `qvm-run ARGS`; the exit status. With `BULKHEAD_MARKS` in the environment, it sets
/// the benchmarks' mark (`crate::sys::mark`) as it makes the call, at the first byte of
/// output and at the end (`cargo xtask bench --qemu`: a `--dispvm` call's instructions).
pub fn main(args: &[String], ctx: &mut Context<'_>) -> u8 {
    let args = match parse_run(args) {
        Ok(a) => a,
        Err(u) => return ctx.usage(u, RUN_HELP),
    };
    let marks = std::env::var_os("BULKHEAD_MARKS").is_some();
    let mark = |on: bool| {
        if on {
            crate::sys::mark();
        }
    };
    mark(marks);
    let (target, mut call) = match ctx.open("qvm-run", "qubes.VMShell", "", &args.target) {
        Ok(opened) => opened,
        Err(status) => return status,
    };
    let Some(mut stdin) = call.stdin() else {
        return super::EXIT_FAILED;
    };
    let first = format!("{}; exit\n", args.command);
    let sent = stdin.write_all(first.as_bytes());
    if args.pass_io && sent.is_ok() {
        let input = std::mem::replace(&mut ctx.stdin, Box::new(std::io::empty()));
        stdin.feed_from(input);
    } else if sent.is_ok() {
        let _ = stdin.close();
    }
    if !args.pass_io && !args.quiet {
        let _ = writeln!(
            ctx.stderr,
            "Running '{}' on {}",
            printable(&args.command, 200),
            printable(&target, 40)
        );
    }
    let filter = args.filter.map_or(ctx.tty, |f| [f; 2]);
    let mut printer = Printer::new(filter, ctx.tty.map(|t| t && args.colour));
    let mut first = marks;
    let end = call.finish(|piece| match piece {
        Output::Stdout(b) if std::mem::take(&mut first) => {
            mark(true);
            if args.pass_io {
                printer.print(0, ctx.stdout, &b);
            }
        }
        Output::Stdout(b) if args.pass_io => printer.print(0, ctx.stdout, &b),
        Output::Stderr(b) if args.pass_io => printer.print(1, ctx.stderr, &b),
        _ => {}
    });
    mark(marks);
    printer.finish(ctx.stdout, ctx.stderr);
    ctx.end_status("qvm-run", end)
}
