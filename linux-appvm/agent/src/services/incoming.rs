//! `qubes.Filecopy`, the target side of `qvm-copy` / `qvm-move`: the call's stdin is a file
//! copy stream (`filecopy`), received into `<home>/QubesIncoming/<source>/` within the
//! default [`Limits`]; the answer goes back on stdout; exit 0 when everything arrived, 1
//! otherwise. The receiver reads through a pipe in a thread of its own, so it holds at most
//! a pipe's and its buffer's worth of the stream; the daemon stops acknowledging while the
//! pipe is full, which stops the sender.

use super::call::{CallInfo, CallPipes, Finish, Worker, spawn_thread};
use super::filecopy::{self, Limits};
use crate::log::{line, printable};
use std::io;

/// Starts the receiver on the call's streams.
pub fn start(info: &CallInfo, pipes: CallPipes) -> io::Result<Worker> {
    let (folder, source, call) = (info.incoming(), info.source.clone(), info.call);
    spawn_thread(info, move || {
        let CallPipes {
            mut stdin,
            mut stdout,
            ..
        } = pipes;
        let result = filecopy::receive(&mut stdin, &folder, Limits::default());
        drop(stdin);
        let _ = filecopy::answer(&mut stdout, &result);
        let what = match &result {
            Ok(s) => format!("{} file(s), {} dir(s), {} bytes", s.files, s.dirs, s.bytes),
            Err(e) => format!("stopped: {}", printable(&e.to_string(), 200)),
        };
        line(&format!(
            "qrexec: call {call}: files from {source} into {}: {what}",
            folder.display()
        ));
        Finish::Code(if result.is_ok() { 0 } else { 1 })
    })
}
