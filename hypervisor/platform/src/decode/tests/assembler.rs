//! Cross-checks the decoder against GNU `as`: every supported form with every register and
//! a spread of addressing modes is assembled, and the output is decoded instruction by
//! instruction (a wrong length derails every following instruction). Skipped when `as` or
//! `objcopy` is missing.

use super::*;
use std::format;
use std::process::Command;
use std::string::String;
use std::vec::Vec;

const R64: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];
const R32: [&str; 16] = [
    "eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "r8d", "r9d", "r10d", "r11d", "r12d",
    "r13d", "r14d", "r15d",
];
const R16: [&str; 16] = [
    "ax", "cx", "dx", "bx", "sp", "bp", "si", "di", "r8w", "r9w", "r10w", "r11w", "r12w", "r13w",
    "r14w", "r15w",
];
const R8: [&str; 16] = [
    "al", "cl", "dl", "bl", "spl", "bpl", "sil", "dil", "r8b", "r9b", "r10b", "r11b", "r12b",
    "r13b", "r14b", "r15b",
];
const HIGH: [&str; 4] = ["ah", "ch", "dh", "bh"];

/// Memory operands in AT&T syntax; `true` if they need a REX prefix (not usable with AH..BH).
const MEMORY: [(&str, bool); 17] = [
    ("(%rax)", false),
    ("(%rsp)", false),
    ("(%rbp)", false),
    ("-8(%rbp)", false),
    ("0x30(%rdx)", false),
    ("0x12345(%rdx)", false),
    ("0x1000b0", false),
    ("0x10(%rip)", false),
    ("(%rax,%rbx,4)", false),
    ("0x10(,%rcx,8)", false),
    ("(%eax)", false),
    ("%fs:(%rax)", false),
    ("0x7fffffff(%rsi,%rdi)", false),
    ("(%r12)", true),
    ("0x30(%r12)", true),
    ("(%r13)", true),
    ("-0x80(%r13,%r14,2)", true),
];

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Assembles `source` (AT&T syntax, 64-bit) and returns the bytes of `.text`.
fn assemble(source: &str) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("bulkhead-decode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (s, o, bin) = (dir.join("t.s"), dir.join("t.o"), dir.join("t.bin"));
    std::fs::write(&s, source).unwrap();
    let status = Command::new("as")
        .arg("--64")
        .arg("-o")
        .arg(&o)
        .arg(&s)
        .status()
        .unwrap();
    assert!(status.success(), "as failed");
    let status = Command::new("objcopy")
        .args(["-O", "binary", "-j", ".text"])
        .arg(&o)
        .arg(&bin)
        .status()
        .unwrap();
    assert!(status.success(), "objcopy failed");
    let bytes = std::fs::read(&bin).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    bytes
}

#[test]
fn matches_gnu_as() {
    if !have("as") || !have("objcopy") {
        std::eprintln!("skipped: GNU as or objcopy not found");
        return;
    }
    let mut source = String::from(".text\n");
    let mut expected: Vec<(String, u8, Access)> = Vec::new();
    let mut add = |line: String, size: u8, access: Access| {
        source.push_str(&line);
        source.push('\n');
        expected.push((line, size, access));
    };
    let none = Extend::None;
    for (mem, needs_rex) in MEMORY {
        for r in 0..16u8 {
            let i = usize::from(r);
            let full = Full(r);
            for (suffix, names, size) in [("q", &R64, 8), ("l", &R32, 4), ("w", &R16, 2)] {
                let reg = names[i];
                add(
                    format!("mov{suffix} %{reg}, {mem}"),
                    size,
                    Access::Store { src: Reg(full) },
                );
                let load = Access::Load {
                    dst: full,
                    extend: none,
                };
                add(format!("mov{suffix} {mem}, %{reg}"), size, load);
            }
            let reg = R8[i];
            add(
                format!("movb %{reg}, {mem}"),
                1,
                Access::Store { src: Reg(full) },
            );
            add(
                format!("movb {mem}, %{reg}"),
                1,
                Access::Load {
                    dst: full,
                    extend: none,
                },
            );
            for (op, names, dst_size) in [("zbw", &R16, 2), ("zbl", &R32, 4), ("zbq", &R64, 8)] {
                let ext = Zero { dst_size };
                let load = Access::Load {
                    dst: full,
                    extend: ext,
                };
                add(format!("mov{op} {mem}, %{}", names[i]), 1, load);
                let ext = Sign { dst_size };
                let load = Access::Load {
                    dst: full,
                    extend: ext,
                };
                add(format!("movs{} {mem}, %{}", &op[1..], names[i]), 1, load);
            }
            for (op, names, dst_size) in [("zwl", &R32, 4), ("zwq", &R64, 8)] {
                let load = Access::Load {
                    dst: full,
                    extend: Zero { dst_size },
                };
                add(format!("mov{op} {mem}, %{}", names[i]), 2, load);
                let load = Access::Load {
                    dst: full,
                    extend: Sign { dst_size },
                };
                add(format!("movs{} {mem}, %{}", &op[1..], names[i]), 2, load);
            }
        }
        if !needs_rex {
            for (r, reg) in HIGH.iter().enumerate() {
                let high = HighByte(r as u8);
                add(
                    format!("movb %{reg}, {mem}"),
                    1,
                    Access::Store { src: Reg(high) },
                );
                add(
                    format!("movb {mem}, %{reg}"),
                    1,
                    Access::Load {
                        dst: high,
                        extend: none,
                    },
                );
            }
        }
        for (line, size, imm) in [
            (format!("movb $0x81, {mem}"), 1, 0x81),
            (format!("movw $0x8123, {mem}"), 2, 0x8123),
            (format!("movl $0x81234567, {mem}"), 4, 0x8123_4567),
            (
                format!("movq $-0x7edcba99, {mem}"),
                8,
                (-0x7edc_ba99i64) as u64,
            ),
            (format!("movq $0x12345678, {mem}"), 8, 0x1234_5678),
        ] {
            add(line, size, Access::Store { src: Imm(imm) });
        }
    }
    let bytes = assemble(&source);
    let mut pos = 0;
    for (line, size, access) in &expected {
        let insn = decode(&bytes[pos..]).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!((insn.size, insn.access), (*size, *access), "{line}");
        pos += usize::from(insn.len);
    }
    assert_eq!(pos, bytes.len());
    assert!(expected.len() > 1000);
}
