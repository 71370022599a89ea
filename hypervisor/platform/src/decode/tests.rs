extern crate std;

use super::values::mask;
use super::*;
// explicit: `core::iter::Extend` is in the prelude too
use super::Extend;
use proptest::prelude::*;

mod assembler;

fn ok(bytes: &[u8]) -> MmioInstruction {
    decode(bytes).unwrap_or_else(|e| panic!("{bytes:02x?}: {e}"))
}

fn load(len: u8, size: u8, dst: RegOperand, extend: Extend) -> MmioInstruction {
    MmioInstruction {
        len,
        size,
        access: Access::Load { dst, extend },
    }
}

fn store(len: u8, size: u8, src: StoreSource) -> MmioInstruction {
    MmioInstruction {
        len,
        size,
        access: Access::Store { src },
    }
}

use Extend::{Sign, Zero};
use RegOperand::{Full, HighByte};
use StoreSource::{Imm, Reg};

#[test]
fn linux_readl_writel() {
    // mov eax, [rdx]
    assert_eq!(ok(&[0x8b, 0x02]), load(2, 4, Full(0), Extend::None));
    // mov [rdx], eax
    assert_eq!(ok(&[0x89, 0x02]), store(2, 4, Reg(Full(0))));
    // mov rax, [0xfffffffffee00000] (absolute, SIB without base)
    assert_eq!(
        ok(&[0x48, 0x8b, 0x04, 0x25, 0x00, 0x00, 0xe0, 0xfe]),
        load(8, 8, Full(0), Extend::None)
    );
    // mov [r12+0x30], ecx
    assert_eq!(
        ok(&[0x41, 0x89, 0x4c, 0x24, 0x30]),
        store(5, 4, Reg(Full(1)))
    );
    // mov dword [0xfffffffffee000b0], 0 (the APIC EOI write)
    assert_eq!(
        ok(&[0xc7, 0x04, 0x25, 0xb0, 0x00, 0xe0, 0xfe, 0, 0, 0, 0]),
        store(11, 4, Imm(0))
    );
    // movzx eax, word [rax+4]
    assert_eq!(
        ok(&[0x0f, 0xb7, 0x40, 0x04]),
        load(4, 2, Full(0), Zero { dst_size: 4 })
    );
    // mov [rdi+1], ah / with REX: spl
    assert_eq!(ok(&[0x88, 0x67, 0x01]), store(3, 1, Reg(HighByte(0))));
    assert_eq!(ok(&[0x40, 0x88, 0x67, 0x01]), store(4, 1, Reg(Full(4))));
    // mov [rax], cx
    assert_eq!(ok(&[0x66, 0x89, 0x08]), store(3, 2, Reg(Full(1))));
    // mov eax, [rip+0x12345678]
    assert_eq!(
        ok(&[0x8b, 0x05, 0x78, 0x56, 0x34, 0x12]),
        load(6, 4, Full(0), Extend::None)
    );
}

#[test]
fn registers_and_extensions() {
    // mov r15, [rax]: REX.WR
    assert_eq!(ok(&[0x4c, 0x8b, 0x38]), load(3, 8, Full(15), Extend::None));
    // mov bh, [rax]; mov dil, [rax]; mov r9b, [rax]
    assert_eq!(ok(&[0x8a, 0x38]), load(2, 1, HighByte(3), Extend::None));
    assert_eq!(ok(&[0x40, 0x8a, 0x38]), load(3, 1, Full(7), Extend::None));
    assert_eq!(ok(&[0x44, 0x8a, 0x08]), load(3, 1, Full(9), Extend::None));
    // movzx esp, byte [rax] names esp, not ah
    assert_eq!(
        ok(&[0x0f, 0xb6, 0x20]),
        load(3, 1, Full(4), Zero { dst_size: 4 })
    );
    // movsx rdx, word [rbx]; movsx cx, byte [rbx]; movzx rax, byte [rbx]
    assert_eq!(
        ok(&[0x48, 0x0f, 0xbf, 0x13]),
        load(4, 2, Full(2), Sign { dst_size: 8 })
    );
    assert_eq!(
        ok(&[0x66, 0x0f, 0xbe, 0x0b]),
        load(4, 1, Full(1), Sign { dst_size: 2 })
    );
    assert_eq!(
        ok(&[0x48, 0x0f, 0xb6, 0x03]),
        load(4, 1, Full(0), Zero { dst_size: 8 })
    );
    // mov [rax], r10 with REX.B on the base only: the register is rdx
    assert_eq!(ok(&[0x49, 0x89, 0x12]), store(3, 8, Reg(Full(2))));
}

#[test]
fn immediates() {
    // mov byte [rax], 0x80
    assert_eq!(ok(&[0xc6, 0x00, 0x80]), store(3, 1, Imm(0x80)));
    // mov word [rax], 0xbeef
    assert_eq!(
        ok(&[0x66, 0xc7, 0x00, 0xef, 0xbe]),
        store(5, 2, Imm(0xbeef))
    );
    // mov dword [rax], 0x80000000: no sign extension
    assert_eq!(
        ok(&[0xc7, 0x00, 0, 0, 0, 0x80]),
        store(6, 4, Imm(0x8000_0000))
    );
    // mov qword [rax], -2: sign-extended
    assert_eq!(
        ok(&[0x48, 0xc7, 0x00, 0xfe, 0xff, 0xff, 0xff]),
        store(7, 8, Imm(0xffff_ffff_ffff_fffe))
    );
    // REX.W wins over 66
    assert_eq!(
        ok(&[0x66, 0x48, 0xc7, 0x00, 1, 0, 0, 0]),
        store(8, 8, Imm(1))
    );
}

#[test]
fn lengths_of_addressing_forms() {
    let cases: &[&[u8]] = &[
        &[0x8b, 0x00],                               // [rax]
        &[0x8b, 0x04, 0x24],                         // [rsp]
        &[0x8b, 0x45, 0x08],                         // [rbp+8]
        &[0x8b, 0x80, 1, 2, 3, 4],                   // [rax+disp32]
        &[0x8b, 0x04, 0x98],                         // [rax+rbx*4]
        &[0x8b, 0x44, 0x98, 0x10],                   // [rax+rbx*4+0x10]
        &[0x8b, 0x84, 0x98, 1, 2, 3, 4],             // [rax+rbx*4+disp32]
        &[0x8b, 0x04, 0xcd, 1, 2, 3, 4],             // [rcx*8+disp32]
        &[0x41, 0x8b, 0x45, 0x00],                   // [r13+0]
        &[0x67, 0x8b, 0x00],                         // [eax]
        &[0x64, 0x8b, 0x00],                         // fs:[rax]
        &[0x3e, 0x67, 0x66, 0x8b, 0x44, 0x24, 0x10], // several prefixes
    ];
    for bytes in cases {
        let mut padded = bytes.to_vec();
        padded.extend_from_slice(&[0x90; 8]);
        assert_eq!(usize::from(ok(&padded).len), bytes.len(), "{bytes:02x?}");
        // one byte short is truncated
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Truncated)
        );
    }
}

#[test]
fn refusals() {
    assert_eq!(decode(&[]), Err(DecodeError::Truncated));
    assert_eq!(decode(&[0x48]), Err(DecodeError::Truncated));
    assert_eq!(decode(&[0x0f]), Err(DecodeError::Truncated));
    assert_eq!(decode(&[0x89, 0xc0]), Err(DecodeError::RegisterOperand));
    assert_eq!(decode(&[0xf0, 0x89, 0x00]), Err(DecodeError::Prefix(0xf0)));
    assert_eq!(decode(&[0xf3, 0xa5]), Err(DecodeError::Prefix(0xf3)));
    assert_eq!(decode(&[0xf2, 0x89, 0x00]), Err(DecodeError::Prefix(0xf2)));
    assert_eq!(
        decode(&[0xa1, 0, 0, 0, 0]),
        Err(DecodeError::Unsupported { opcode: 0xa1 })
    );
    assert_eq!(
        decode(&[0x0f, 0x01, 0x00]),
        Err(DecodeError::Unsupported { opcode: 0x0f01 })
    );
    // C7 /1 is no MOV
    assert_eq!(
        decode(&[0xc7, 0x08, 0, 0, 0, 0]),
        Err(DecodeError::Unsupported { opcode: 0xc7 })
    );
    // 15 prefixes and an opcode: too long
    let mut long = std::vec![0x66u8; 15];
    long.extend_from_slice(&[0x89, 0x00]);
    assert_eq!(decode(&long), Err(DecodeError::TooLong));
    // 13 prefixes + 89 00 = 15 bytes: fine
    assert_eq!(ok(&long[2..]).len, 15);
    // a REX before another prefix is ignored: AH again
    assert_eq!(ok(&[0x40, 0x66, 0x88, 0x20]), store(4, 1, Reg(HighByte(0))));
}

#[test]
fn store_values() {
    let regs = |r: Gpr| 0x0101_0101_0101_0101u64 * u64::from(r) + 0x0807_0605_0403_0201;
    let v = |bytes: &[u8]| ok(bytes).store_value(regs).unwrap();
    assert_eq!(v(&[0x48, 0x89, 0x00]), regs(0));
    assert_eq!(v(&[0x89, 0x08]), regs(1) & 0xffff_ffff);
    assert_eq!(v(&[0x66, 0x89, 0x10]), regs(2) & 0xffff);
    assert_eq!(v(&[0x88, 0x18]), regs(3) & 0xff);
    assert_eq!(v(&[0x88, 0x38]), (regs(3) >> 8) & 0xff); // bh
    assert_eq!(v(&[0x44, 0x88, 0x38]), regs(15) & 0xff); // r15b
    assert_eq!(v(&[0xc6, 0x00, 0x7f]), 0x7f);
    assert_eq!(ok(&[0x8b, 0x00]).store_value(regs), None);
    assert_eq!(ok(&[0x89, 0x00]).load_result(regs, 0), None);
}

#[test]
fn load_results() {
    let old = |_: Gpr| 0x1122_3344_5566_7788u64;
    let r = |bytes: &[u8], loaded| ok(bytes).load_result(old, loaded).unwrap();
    // 64, 32 (zero-extends), 16 and 8 (merge)
    assert_eq!(r(&[0x48, 0x8b, 0x00], u64::MAX), (0, u64::MAX));
    assert_eq!(r(&[0x8b, 0x08], 0xdead_beef), (1, 0xdead_beef));
    assert_eq!(r(&[0x66, 0x8b, 0x10], 0xbeef), (2, 0x1122_3344_5566_beef));
    assert_eq!(r(&[0x8a, 0x18], 0xab), (3, 0x1122_3344_5566_77ab));
    // AH..BH write bits 8..16
    assert_eq!(r(&[0x8a, 0x20], 0xab), (0, 0x1122_3344_5566_ab88));
    assert_eq!(r(&[0x8a, 0x3a], 0xab), (3, 0x1122_3344_5566_ab88));
    // bits above `size` in `loaded` are ignored
    assert_eq!(r(&[0x8a, 0x18], 0x1ab), (3, 0x1122_3344_5566_77ab));
    assert_eq!(r(&[0x8b, 0x08], 0x1_dead_beef), (1, 0xdead_beef));
    // movzx / movsx at every destination width
    assert_eq!(r(&[0x0f, 0xb6, 0x00], 0x80), (0, 0x80));
    assert_eq!(r(&[0x48, 0x0f, 0xb7, 0x00], 0x8000), (0, 0x8000));
    assert_eq!(
        r(&[0x66, 0x0f, 0xb6, 0x00], 0x80),
        (0, 0x1122_3344_5566_0080)
    );
    assert_eq!(r(&[0x0f, 0xbe, 0x00], 0x80), (0, 0xffff_ff80));
    assert_eq!(r(&[0x0f, 0xbf, 0x00], 0x8000), (0, 0xffff_8000));
    assert_eq!(
        r(&[0x48, 0x0f, 0xbe, 0x00], 0x80),
        (0, 0xffff_ffff_ffff_ff80)
    );
    assert_eq!(r(&[0x48, 0x0f, 0xbf, 0x00], 0x7fff), (0, 0x7fff));
    assert_eq!(
        r(&[0x66, 0x0f, 0xbe, 0x00], 0xfe),
        (0, 0x1122_3344_5566_fffe)
    );
}

const BODIES: &[&[u8]] = &[
    &[0x8b, 0x44, 0x24, 0x10],
    &[0x89, 0x05, 1, 2, 3, 4],
    &[0x0f, 0xb6, 0x00],
];

proptest! {
    #[test]
    fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
        if let Ok(insn) = decode(&bytes) {
            prop_assert!(usize::from(insn.len) <= bytes.len());
            prop_assert!(usize::from(insn.len) <= MAX_INSTRUCTION_LEN);
            prop_assert!(matches!(insn.size, 1 | 2 | 4 | 8));
            let regs = |r: Gpr| u64::from(r).wrapping_mul(0x0123_4567_89ab_cdef);
            match insn.access {
                Access::Load { .. } => {
                    let (r, _) = insn.load_result(regs, u64::MAX).unwrap();
                    prop_assert!(r < 16);
                }
                Access::Store { .. } => {
                    let v = insn.store_value(regs).unwrap();
                    prop_assert_eq!(v & !mask(insn.size), 0);
                }
            }
        }
    }

    #[test]
    fn prefixes_only_add_length(
        prefixes in proptest::collection::vec(
            prop::sample::select(&[0x66u8, 0x67, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65][..]), 0..5),
        body in prop::sample::select(BODIES),
    ) {
        let mut bytes = prefixes.clone();
        bytes.extend_from_slice(body);
        prop_assert_eq!(usize::from(ok(&bytes).len), bytes.len());
    }
}
