use super::*;
use proptest::prelude::*;

#[test]
fn table_has_no_duplicates_and_documents_every_row() {
    for (i, a) in TABLE.iter().enumerate() {
        assert!(!a.name.is_empty() && !a.why.is_empty());
        assert!(
            TABLE[i + 1..].iter().all(|b| b.index != a.index),
            "{} twice",
            a.name
        );
    }
}

#[test]
fn the_brief_s_pass_through_and_emulated_sets() {
    for index in [
        0xC000_0100,
        0xC000_0101,
        0xC000_0102,
        0xC000_0081,
        0xC000_0082,
        0xC000_0083,
        0xC000_0084,
        0x174,
        0x175,
        0x176,
    ] {
        assert_eq!(policy(index), MsrPolicy::PassThrough, "{index:#x}");
    }
    assert_eq!(policy(0x1B), MsrPolicy::Emulated(EmulatedMsr::ApicBase));
    assert_eq!(policy(0x10), MsrPolicy::Emulated(EmulatedMsr::Tsc));
    assert_eq!(policy(0x6E0), MsrPolicy::Emulated(EmulatedMsr::TscDeadline));
    assert_eq!(policy(0x277), MsrPolicy::Emulated(EmulatedMsr::Pat));
    assert_eq!(policy(0xC000_0080), MsrPolicy::Emulated(EmulatedMsr::Efer));
}

#[test]
fn unchecked_reads_are_answered() {
    assert_eq!(policy(IA32_MISC_ENABLE), MsrPolicy::Constant(0x1801));
    assert_eq!(policy(IA32_BIOS_SIGN_ID), MsrPolicy::Constant(0));
    assert_eq!(policy(MSR_K7_HWCR), MsrPolicy::Constant(1 << 24));
    assert!(matches!(policy(MSR_AMD64_NB_CFG), MsrPolicy::Constant(v) if v & 1 << 46 != 0));
    assert!(matches!(policy(MSR_AMD64_DE_CFG), MsrPolicy::Constant(2)));
    assert_eq!(MISC_ENABLE_VALUE & 1 << 34, 0, "XD not disabled");
    assert_eq!(MISC_ENABLE_VALUE & 1 << 22, 0, "CPUID not limited");
}

#[test]
fn everything_else_faults() {
    for index in [
        0x0,
        0x3A,
        0x48,
        0x49,
        0x10A,
        0x802,
        0x830,
        0x8FF,
        0x1B0,
        0xDA0,
        0x4B56_4D00,
        0x4000_0000,
        0xC000_0103,
        0xC001_0114,
        0xC001_0131,
        0xFFFF_FFFF,
    ] {
        assert_eq!(policy(index), MsrPolicy::Fault, "{index:#x}");
    }
    assert_eq!(
        entry(IA32_SPEC_CTRL).map(|e| e.name),
        Some("IA32_SPEC_CTRL")
    );
    assert_eq!(entry(0x1234), None);
}

#[test]
fn pat_validation() {
    assert!(pat_is_valid(PAT_RESET));
    assert!(pat_is_valid(0x0007_0106_0007_0406), "Linux's PAT with WC");
    assert!(!pat_is_valid(0x0007_0406_0007_0402), "type 2 reserved");
    assert!(!pat_is_valid(0x0807_0406_0007_0406), "type 8 reserved");
}

#[test]
fn efer_writes() {
    let boot = EFER_LME | EFER_LMA;
    assert!(
        efer_write_ok(boot, boot | EFER_SCE | EFER_NXE, true),
        "head_64"
    );
    assert!(efer_write_ok(boot | EFER_SCE, boot, true), "SCE may go");
    assert!(!efer_write_ok(boot, EFER_SCE, true), "leaving long mode");
    assert!(!efer_write_ok(boot, boot | 1 << 12, true), "SVME");
    assert!(
        !efer_write_ok(boot, boot | 1 << 14, true),
        "FFXSR not offered"
    );
    // A secondary vCPU's trampoline: LME set with paging off, LMA left to the processor.
    assert!(efer_write_ok(0, EFER_LME | EFER_NXE, false), "trampoline");
    assert!(!efer_write_ok(0, EFER_LME, true), "LME with paging on");
    assert!(
        !efer_write_ok(0, EFER_LMA | EFER_LME, false),
        "LMA is the processor's"
    );
}

proptest! {
    #[test]
    fn policy_is_total(index in any::<u32>()) {
        let p = policy(index);
        if entry(index).is_none() {
            prop_assert_eq!(p, MsrPolicy::Fault);
        }
        if (0x800..=0x8FF).contains(&index) {
            prop_assert_eq!(p, MsrPolicy::Fault, "no x2APIC");
        }
    }
}
