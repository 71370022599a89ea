//! `qvm-ls`, `qvm-start`, `qvm-shutdown`, `qvm-kill`: one call of `admin.vm.List`,
//! `admin.vm.Start`, `admin.vm.Shutdown` or `admin.vm.Kill` to the admin qube
//! (`@adminvm`) per qube named, the qube's name as the service argument (`qvm-ls` without
//! names: one call without an argument). The answer (stdout, stderr) is printed; the exit
//! status is the first call's that failed, else 0.

use super::Context;
use super::args::{admin_help, admin_service, parse_admin};
use super::output::Printer;
use crate::qrexec::client::Output;

/// Runs the admin command `name` with `args`; the exit status.
pub fn main(name: &str, args: &[String], ctx: &mut Context<'_>) -> u8 {
    let qubes = match parse_admin(name, args) {
        Ok(q) => q,
        Err(u) => return ctx.usage(u, &admin_help(name)),
    };
    let arguments = match qubes.is_empty() {
        true => vec![String::new()],
        false => qubes,
    };
    let mut status = 0;
    for argument in arguments {
        let s = one(name, &argument, ctx);
        if status == 0 {
            status = s;
        }
    }
    status
}

fn one(name: &str, argument: &str, ctx: &mut Context<'_>) -> u8 {
    let (_, mut call) = match ctx.open(name, admin_service(name), argument, "@adminvm") {
        Ok(opened) => opened,
        Err(status) => return status,
    };
    if let Some(stdin) = call.stdin() {
        let _ = stdin.close();
    }
    let mut printer = Printer::new(ctx.tty, [false; 2]);
    let end = call.finish(|piece| match piece {
        Output::Stdout(b) => printer.print(0, ctx.stdout, &b),
        Output::Stderr(b) => printer.print(1, ctx.stderr, &b),
        _ => {}
    });
    printer.finish(ctx.stdout, ctx.stderr);
    ctx.end_status(name, end)
}
