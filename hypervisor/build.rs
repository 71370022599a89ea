//! Link flags for the freestanding hypervisor image (binaries only, so host tests of the
//! library crates are unaffected). See ../shared/PLATFORM.md.
include!("freestanding/link_args.rs");

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    link_freestanding(&std::path::Path::new(&dir).join("hypervisor.ld"));
    write_isr_stubs();
    println!("cargo:rerun-if-changed=src/boot/entry.s");
    println!("cargo:rerun-if-changed=src/boot/ap.s");
    println!("cargo:rerun-if-changed=src/arch/x86/isr.s");
    println!("cargo:rerun-if-changed=src/virt/svm/run.s");
}

/// Writes the 256 interrupt-vector stubs and their address table (`isr_table`) to
/// `$OUT_DIR/isr_stubs.s`; `arch/x86/isr.s` holds the code they jump to.
fn write_isr_stubs() {
    use std::fmt::Write;
    // Exceptions for which the CPU pushes an error code.
    const WITH_ERROR: [u32; 8] = [8, 10, 11, 12, 13, 14, 17, 21];
    let mut s = String::from("    .section .text.isr, \"ax\"\n");
    for v in 0..256u32 {
        let _ = writeln!(s, "    .balign 16\nisr_{v}:");
        match v {
            2 | 255 => s.push_str("    jmp isr_ignore\n"),
            0..=31 => {
                if !WITH_ERROR.contains(&v) && v != 29 && v != 30 {
                    s.push_str("    push 0\n");
                }
                let _ = writeln!(s, "    push {v}\n    jmp isr_exception");
            }
            32 => s.push_str("    jmp isr_timer\n"),
            // Device interrupts (`devices/irq.rs`: FIRST_VECTOR and VECTORS).
            0x30..=0x6f => {
                let _ = writeln!(s, "    push {}\n    jmp isr_device", v - 0x30);
            }
            _ => s.push_str("    jmp isr_external\n"),
        }
    }
    s.push_str(
        "    .section .rodata.isr_table, \"a\"\n    .balign 8\n    .globl isr_table\nisr_table:\n",
    );
    for v in 0..256u32 {
        let _ = writeln!(s, "    .quad isr_{v}");
    }
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    std::fs::write(format!("{out}/isr_stubs.s"), s).expect("OUT_DIR is writable");
}
