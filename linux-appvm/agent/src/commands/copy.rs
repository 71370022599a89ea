//! `qvm-copy`, `qvm-copy-to-vm`, `qvm-move`, `qvm-move-to-vm`: `qubes.Filecopy` with the
//! stream of `services::filecopy`. The sources are walked first (anything that cannot be
//! sent is refused before the call); the stream is written by a thread while the answer
//! is read here. A move removes the sources only when the receiver answered that
//! everything arrived, with the very summary that was sent.

use super::args::{COPY_HELP, parse_copy};
use super::output::Printer;
use super::{Context, EXIT_FAILED};
use crate::log::printable;
use crate::qrexec::client::Output;
use crate::services::filecopy::{self, Summary};
use std::path::PathBuf;

/// Most bytes of stdout kept for the answer (an answer is at most about 1 KiB).
const ANSWER_MAX: usize = 64 * 1024;

/// Runs the copy command `name` with `args`; the exit status.
pub fn main(name: &str, args: &[String], ctx: &mut Context<'_>) -> u8 {
    let args = match parse_copy(name, args) {
        Ok(a) => a,
        Err(u) => return ctx.usage(u, COPY_HELP),
    };
    let plan = match filecopy::plan(&args.files) {
        Ok(p) => p,
        Err(e) => return fail(ctx, name, &e.to_string()),
    };
    let (target, mut call) = match ctx.open(name, "qubes.Filecopy", "", &args.target) {
        Ok(opened) => opened,
        Err(status) => return status,
    };
    let Some(mut stdin) = call.stdin() else {
        return EXIT_FAILED;
    };
    let sender = std::thread::spawn(move || {
        let sent = plan.send(&mut stdin);
        if sent.is_ok() {
            let _ = stdin.close();
        }
        sent
    });
    let mut answer = Vec::new();
    let mut printer = Printer::new(ctx.tty, [false; 2]);
    let end = call.finish(|piece| match piece {
        Output::Stdout(b) => {
            let room = ANSWER_MAX.saturating_sub(answer.len());
            answer.extend_from_slice(&b[..b.len().min(room)]);
        }
        Output::Stderr(b) => printer.print(1, ctx.stderr, &b),
        _ => {}
    });
    printer.finish(ctx.stdout, ctx.stderr);
    let sent = sender
        .join()
        .unwrap_or_else(|_| Err(filecopy::SendError::Answer("the sender stopped".into())));
    let received = filecopy::read_answer(&mut answer.as_slice());
    match (received, sent) {
        (Ok(got), Ok(sent)) if got == sent => {
            if args.remove {
                return remove(ctx, name, &args.files);
            }
            let _ = tell(ctx, name, &target, got);
            0
        }
        (Ok(got), Ok(sent)) => fail(
            ctx,
            name,
            &format!("the receiver reports {got:?}, but {sent:?} was sent; nothing is removed"),
        ),
        // The receiver's verdict says most (a refusal stops the stream too).
        (Err(e), _) if !matches!(end, Output::Failed(_)) => fail(ctx, name, &e.to_string()),
        (_, Err(e)) if !matches!(end, Output::Failed(_)) => fail(ctx, name, &e.to_string()),
        _ => ctx.end_status(name, end).max(EXIT_FAILED),
    }
}

fn fail(ctx: &mut Context<'_>, name: &str, why: &str) -> u8 {
    let _ = writeln!(ctx.stderr, "{name}: {}", printable(why, 1200));
    EXIT_FAILED
}

fn tell(ctx: &mut Context<'_>, name: &str, target: &str, s: Summary) -> std::io::Result<()> {
    let target = printable(target, 40);
    writeln!(
        ctx.stderr,
        "{name}: {} file(s), {} folder(s), {} bytes copied to {target}",
        s.files, s.dirs, s.bytes
    )
}

/// Removes the sources of a move that arrived whole.
fn remove(ctx: &mut Context<'_>, name: &str, files: &[PathBuf]) -> u8 {
    let mut status = 0;
    for path in files {
        let removed = match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
            Ok(_) => std::fs::remove_file(path),
            Err(e) => Err(e),
        };
        if let Err(e) = removed {
            status = fail(ctx, name, &format!("removing {}: {e}", path.display()));
        }
    }
    status
}
