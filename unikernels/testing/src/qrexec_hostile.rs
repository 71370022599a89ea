//! `qrexec-client hostile-copy=yes target=QUBE`: a hostile `qubes.Filecopy` sender. Each
//! call sends a stream (the agent's format, `linux-appvm/agent/src/services/filecopy`)
//! built to escape the target's incoming folder or leave a partial file behind: names with
//! `..`, `/`, NUL, an absurd size, a stream cut short, a `Dir` named `..`. Each must be
//! refused by the receiver (exit code not 0, an answer that says why); the scenario then
//! checks, inside the target, that nothing landed outside `~/QubesIncoming/<this qube>/`.
//! A last, honest copy must arrive, so the refusals are not the receiver refusing all.

use alloc::vec::Vec;
use bulkhead_rt::{Args, Boot, error, info};

const EXIT_FAILED: i32 = 5;
const DIR: u8 = 1;
const FILE: u8 = 2;
const UP: u8 = 3;
const END: u8 = 4;

fn name(out: &mut Vec<u8>, n: &[u8]) {
    out.extend_from_slice(&(n.len() as u16).to_le_bytes());
    out.extend_from_slice(n);
}

fn file(out: &mut Vec<u8>, n: &[u8], size: u64, data: &[u8]) {
    out.push(FILE);
    name(out, n);
    out.extend_from_slice(&0o644u32.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(data);
}

fn stream(records: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"BHFC");
    out.extend_from_slice(&1u16.to_le_bytes());
    records(&mut out);
    out
}

/// The hostile streams, each with what it tries.
fn attacks() -> Vec<(&'static str, Vec<u8>)> {
    let end = |out: &mut Vec<u8>| out.push(END);
    alloc::vec![
        (
            "a file named ../escaped-dotdot",
            stream(|o| {
                file(o, b"../escaped-dotdot", 4, b"evil");
                end(o);
            })
        ),
        (
            "a file named /tmp/escaped-absolute",
            stream(|o| {
                file(o, b"/tmp/escaped-absolute", 4, b"evil");
                end(o);
            })
        ),
        (
            "a name with NUL",
            stream(|o| {
                file(o, b"escaped-nul\0x", 4, b"evil");
                end(o);
            })
        ),
        (
            "a directory named ..",
            stream(|o| {
                o.push(DIR);
                name(o, b"..");
                o.extend_from_slice(&0o755u32.to_le_bytes());
                file(o, b"escaped-updir", 4, b"evil");
                o.push(UP);
                end(o);
            })
        ),
        (
            "an absurd size",
            stream(|o| {
                file(o, b"huge", u64::MAX, b"evil");
            })
        ),
        (
            "a stream cut short",
            stream(|o| {
                file(o, b"partial", 1000, b"only a little");
            })
        ),
        (
            "Up above the top",
            stream(|o| {
                o.push(UP);
                file(o, b"escaped-up", 4, b"evil");
                end(o);
            })
        ),
    ]
}

pub fn client(boot: &Boot, args: &Args<'_>) -> i32 {
    let target = args.get("target").unwrap_or("work");
    let mut ch = match super::qrexec::open(boot) {
        Ok(c) => c,
        Err(e) => {
            error!("testing: hostile-copy: {e}");
            return EXIT_FAILED;
        }
    };
    let mut failed = 0;
    let honest = stream(|o| {
        file(o, b"honest.txt", 6, b"honest");
        o.push(END);
    });
    let mut cases = attacks();
    cases.push(("an honest copy", honest));
    for (i, (what, bytes)) in cases.iter().enumerate() {
        let a =
            match super::qrexec::call(&mut ch, i as u32 + 1, "qubes.Filecopy", "", target, bytes) {
                Ok(a) => a,
                Err(e) => {
                    error!("testing: hostile-copy: {what}: {e}");
                    return EXIT_FAILED;
                }
            };
        let answer = core::str::from_utf8(a.stdout.get(8..).unwrap_or(&[])).unwrap_or("?");
        let honest = i == cases.len() - 1;
        let ok = if honest {
            a.code == Some(0)
        } else {
            a.code.is_some_and(|c| c != 0) || a.refused.is_some()
        };
        if ok {
            info!(
                "testing: hostile-copy: {what}: {} (exit {:?}) {answer:?}",
                if honest { "arrived" } else { "refused" },
                a.code
            );
        } else {
            failed += 1;
            error!("testing: hostile-copy: {what}: FAILED ({a:?})");
        }
    }
    if failed == 0 {
        info!(
            "testing: hostile-copy: all {} copies answered as expected",
            cases.len()
        );
        0
    } else {
        EXIT_FAILED
    }
}
