//! Architectural and model-specific MSR indices.

/// IA32_TIME_STAMP_COUNTER.
pub const IA32_TSC: u32 = 0x10;
/// IA32_APIC_BASE.
pub const IA32_APIC_BASE: u32 = 0x1B;
/// IA32_FEATURE_CONTROL.
pub const IA32_FEATURE_CONTROL: u32 = 0x3A;
/// IA32_TSC_ADJUST.
pub const IA32_TSC_ADJUST: u32 = 0x3B;
/// IA32_SPEC_CTRL.
pub const IA32_SPEC_CTRL: u32 = 0x48;
/// IA32_PRED_CMD.
pub const IA32_PRED_CMD: u32 = 0x49;
/// IA32_BIOS_SIGN_ID (Intel microcode revision; AMD's MSR_AMD64_PATCH_LEVEL).
pub const IA32_BIOS_SIGN_ID: u32 = 0x8B;
/// MSR_PLATFORM_INFO (Intel).
pub const MSR_PLATFORM_INFO: u32 = 0xCE;
/// IA32_MTRRCAP.
pub const IA32_MTRRCAP: u32 = 0xFE;
/// IA32_ARCH_CAPABILITIES.
pub const IA32_ARCH_CAPABILITIES: u32 = 0x10A;
/// MSR_MISC_FEATURES_ENABLES (Intel).
pub const MSR_MISC_FEATURES_ENABLES: u32 = 0x140;
/// IA32_SYSENTER_CS.
pub const IA32_SYSENTER_CS: u32 = 0x174;
/// IA32_SYSENTER_ESP.
pub const IA32_SYSENTER_ESP: u32 = 0x175;
/// IA32_SYSENTER_EIP.
pub const IA32_SYSENTER_EIP: u32 = 0x176;
/// IA32_MCG_CAP.
pub const IA32_MCG_CAP: u32 = 0x179;
/// IA32_MISC_ENABLE (Intel).
pub const IA32_MISC_ENABLE: u32 = 0x1A0;
/// IA32_DEBUGCTL.
pub const IA32_DEBUGCTL: u32 = 0x1D9;
/// IA32_PAT.
pub const IA32_PAT: u32 = 0x277;
/// IA32_MTRR_DEF_TYPE.
pub const IA32_MTRR_DEF_TYPE: u32 = 0x2FF;
/// IA32_TSC_DEADLINE.
pub const IA32_TSC_DEADLINE: u32 = 0x6E0;
/// IA32_EFER.
pub const IA32_EFER: u32 = 0xC000_0080;
/// IA32_STAR.
pub const IA32_STAR: u32 = 0xC000_0081;
/// IA32_LSTAR.
pub const IA32_LSTAR: u32 = 0xC000_0082;
/// IA32_CSTAR.
pub const IA32_CSTAR: u32 = 0xC000_0083;
/// IA32_FMASK (SFMASK).
pub const IA32_FMASK: u32 = 0xC000_0084;
/// IA32_FS_BASE.
pub const IA32_FS_BASE: u32 = 0xC000_0100;
/// IA32_GS_BASE.
pub const IA32_GS_BASE: u32 = 0xC000_0101;
/// IA32_KERNEL_GS_BASE.
pub const IA32_KERNEL_GS_BASE: u32 = 0xC000_0102;
/// IA32_TSC_AUX.
pub const IA32_TSC_AUX: u32 = 0xC000_0103;
/// MSR_K7_EVNTSEL0 (AMD legacy performance event select 0).
pub const MSR_K7_EVNTSEL0: u32 = 0xC001_0000;
/// MSR_K8_SYSCFG (AMD).
pub const MSR_K8_SYSCFG: u32 = 0xC001_0010;
/// MSR_K7_HWCR (AMD hardware configuration).
pub const MSR_K7_HWCR: u32 = 0xC001_0015;
/// MSR_AMD64_NB_CFG (AMD northbridge configuration).
pub const MSR_AMD64_NB_CFG: u32 = 0xC001_001F;
/// MSR_K8_INT_PENDING_MSG (AMD interrupt pending message, C1E).
pub const MSR_K8_INT_PENDING_MSG: u32 = 0xC001_0055;
/// MSR_FAM10H_MMIO_CONF_BASE (AMD MMCONFIG base).
pub const MSR_FAM10H_MMIO_CONF_BASE: u32 = 0xC001_0058;
/// MSR_K8_TSEG_ADDR (AMD SMM TSEG base).
pub const MSR_K8_TSEG_ADDR: u32 = 0xC001_0112;
/// MSR_AMD64_OSVW_ID_LENGTH (AMD OS-visible workarounds).
pub const MSR_AMD64_OSVW_ID_LENGTH: u32 = 0xC001_0140;
/// MSR_AMD64_LS_CFG (AMD load-store configuration).
pub const MSR_AMD64_LS_CFG: u32 = 0xC001_1020;
/// MSR_AMD64_DE_CFG (AMD decode configuration).
pub const MSR_AMD64_DE_CFG: u32 = 0xC001_1029;
