//! The boot/watch machinery against a stand-in for QEMU (a shell script) and against real
//! QEMU with a hand-made PVH guest that prints the hypervisor's lines and leaves through
//! `isa-debug-exit`. The real-QEMU test is skipped when QEMU is not installed.

use super::*;
use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-qemu-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes the scratch folder of `opts` (where its kernel lies).
fn cleanup(opts: &BootOptions) {
    if let Media::Direct { kernel, .. } = &opts.media
        && let Some(dir) = kernel.parent()
    {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Options whose "QEMU" is a shell script printing `lines`, then doing `then`.
fn fake(name: &str, lines: &[&str], then: &str) -> BootOptions {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch(name);
    let script = dir.join("fake-qemu");
    let mut body = String::from("#!/bin/sh\n");
    for line in lines {
        body.push_str(&format!("printf '%b\\r\\n' '{line}'\n"));
    }
    body.push_str(then);
    body.push('\n');
    std::fs::write(&script, body).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let media = Media::Direct {
        kernel: dir.join("hv"),
        bundle: dir.join("b"),
    };
    let mut opts = BootOptions::new(media, 256);
    opts.qemu = script.display().to_string();
    opts.echo = false;
    opts
}

#[test]
fn stops_as_soon_as_the_watcher_has_seen_enough() {
    let lines = [
        "hv | booting",
        "\\033[32mhv\\033[0m | qube net ready",
        "hv | qube gui ready",
    ];
    let opts = fake("until", &lines, "exec sleep 30");
    let out = boot(&opts, |e| {
        Control::stop_if(matches!(&e.hv, Some(HvEvent::Ready(q)) if q == "net"))
    })
    .unwrap();
    assert!(out.until_met && !out.timed_out);
    assert!(out.ready.contains("net"));
    assert!(out.wall < Duration::from_secs(10), "{:?}", out.wall);
    assert_eq!(out.lines[1], "hv | qube net ready");
    cleanup(&opts);
}

#[test]
fn times_out_and_kills_qemu() {
    let mut opts = fake(
        "timeout",
        &["hv | qube net stopped: triple fault"],
        "exec sleep 30",
    );
    opts.timeout = Some(Duration::from_millis(300));
    let out = boot(&opts, |_| Control::Continue).unwrap();
    assert!(out.timed_out && !out.until_met);
    assert_eq!(
        out.stopped,
        [("net".to_string(), "triple fault".to_string())]
    );
    assert!(out.wall < Duration::from_secs(10), "{:?}", out.wall);
    assert_eq!(out.debug_exit(), None);
    cleanup(&opts);
}

#[test]
fn reports_how_qemu_ended_and_writes_the_log() {
    let mut opts = fake(
        "exit",
        &["hv | panic: out of frames", "tail without newline"],
        "exit 7",
    );
    let log = scratch("exit").join("serial.log");
    opts.serial_log = Some(log.clone());
    let out = boot(&opts, |_| Control::Continue).unwrap();
    assert_eq!(out.panic.as_deref(), Some("out of frames"));
    assert_eq!(out.debug_exit(), Some(3));
    assert_eq!(out.lines.len(), 2);
    let written = std::fs::read_to_string(log).unwrap();
    assert_eq!(written, "hv | panic: out of frames\ntail without newline\n");
    cleanup(&opts);
}

/// A PVH ELF64 whose 32-bit entry writes `text` to COM1, then `exit` to isa-debug-exit (or
/// spins when `exit` is `None`).
fn pvh_guest(text: &str, exit: Option<u8>) -> Vec<u8> {
    const BASE: u64 = 0x10_0000;
    const CODE: usize = 64 + 2 * 56 + 24;
    let mut code = vec![0x66, 0xba, 0xf8, 0x03]; // mov dx, 0x3f8
    let msg_at = BASE + (CODE + 20) as u64;
    code.push(0xbe); // mov esi, msg
    code.extend_from_slice(&(msg_at as u32).to_le_bytes());
    code.push(0xb9); // mov ecx, len
    code.extend_from_slice(&(text.len() as u32).to_le_bytes());
    code.extend_from_slice(&[0xf3, 0x6e]); // rep outsb
    match exit {
        Some(c) => code.extend_from_slice(&[0xb0, c, 0xe6, DEBUG_EXIT_PORT as u8]), // out 0xf4, al
        None => code.extend_from_slice(&[0x90; 4]),
    }
    code.extend_from_slice(&[0xf4, 0xeb, 0xfd]); // hlt; jmp back to hlt
    code.resize(20, 0x90);
    code.extend_from_slice(text.as_bytes());
    let total = (CODE + code.len()) as u64;
    let entry = BASE + CODE as u64;

    let mut elf = Vec::new();
    let w16 = |v: &mut Vec<u8>, x: u16| v.extend_from_slice(&x.to_le_bytes());
    let w32 = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
    let w64 = |v: &mut Vec<u8>, x: u64| v.extend_from_slice(&x.to_le_bytes());
    elf.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    w16(&mut elf, 2); // ET_EXEC
    w16(&mut elf, 62); // EM_X86_64
    w32(&mut elf, 1);
    w64(&mut elf, entry);
    w64(&mut elf, 64); // phoff
    w64(&mut elf, 0); // shoff
    w32(&mut elf, 0); // flags
    for v in [64, 56, 2, 64, 0, 0] {
        w16(&mut elf, v);
    }
    // (type, flags, offset, address, size, align)
    for (kind, flags, off, size, align) in
        [(1u32, 7u32, 0u64, total, 0x1000u64), (4, 4, 176, 24, 4)]
    {
        w32(&mut elf, kind);
        w32(&mut elf, flags);
        w64(&mut elf, off);
        w64(&mut elf, BASE + off);
        w64(&mut elf, BASE + off);
        w64(&mut elf, size);
        w64(&mut elf, size);
        w64(&mut elf, align);
    }
    // XEN_ELFNOTE_PHYS32_ENTRY (type 18), name "Xen", 8-byte descriptor.
    w32(&mut elf, 4);
    w32(&mut elf, 8);
    w32(&mut elf, 18);
    elf.extend_from_slice(b"Xen\0");
    w64(&mut elf, entry);
    assert_eq!(elf.len(), CODE);
    elf.extend_from_slice(&code);
    elf
}

fn real_qemu(name: &str, guest: Vec<u8>) -> Option<BootOptions> {
    if crate::deps::find_program(QEMU).is_none() {
        eprintln!("skipped: {QEMU} is not installed");
        return None;
    }
    let dir = scratch(name);
    std::fs::write(dir.join("hv.elf"), guest).unwrap();
    std::fs::write(dir.join("test.bundle"), b"BHBUNDLE").unwrap();
    let media = Media::Direct {
        kernel: dir.join("hv.elf"),
        bundle: dir.join("test.bundle"),
    };
    let mut opts = BootOptions::new(media, 64);
    opts.echo = false;
    opts.timeout = Some(Duration::from_secs(60));
    Some(opts)
}

#[test]
fn boots_real_qemu_and_reads_its_serial() {
    let text = "\x1b[36mhv\x1b[0m | qube net ready\r\nhv | halting\r\n";
    let Some(opts) = real_qemu("real", pvh_guest(text, Some(0))) else {
        return;
    };
    let out = boot(&opts, |_| Control::Continue).unwrap();
    assert!(out.ready.contains("net"), "{:?}", out.lines);
    assert!(out.halted && !out.timed_out, "{out:?}");
    assert_eq!(out.debug_exit(), Some(0), "{:?}", out.qemu_status);
    cleanup(&opts);
}

#[test]
fn stops_real_qemu_once_ready() {
    let text = "hv | qube net ready\r\nhv | qube gui ready\r\n";
    let Some(opts) = real_qemu("real-until", pvh_guest(text, None)) else {
        return;
    };
    let expected = ["net", "gui"];
    let out = boot(&opts, |e| {
        let seen = matches!(&e.hv, Some(HvEvent::Ready(q)) if q == "gui");
        Control::stop_if(seen)
    })
    .unwrap();
    assert!(out.until_met, "{out:?}");
    assert!(out.not_ready(&expected).is_empty());
    assert!(out.wall < Duration::from_secs(30));
    cleanup(&opts);
}
