//! The local APIC (xAPIC, memory-mapped; TCG has no x2APIC) and its timer, which gives the
//! scheduler its time slices. Unsafe module: the register accesses are MMIO.

use super::cpu;
use core::sync::atomic::{AtomicU64, Ordering};

/// Vector of the APIC timer (its stub is `isr_timer`).
pub const TIMER_VECTOR: u8 = 0x20;
/// Vector of the wake-up IPI one CPU sends another (its stub is `isr_external`: the
/// interrupt itself carries nothing; it ends a halt or a guest's run, and the woken CPU's
/// scheduler then reads its mailboxes).
pub const WAKE_VECTOR: u8 = 0x21;
const SPURIOUS_VECTOR: u32 = 0xFF;

const REG_ID: u64 = 0x020;
const REG_TPR: u64 = 0x080;
const REG_EOI: u64 = 0x0B0;
const REG_SVR: u64 = 0x0F0;
const REG_ICR_LOW: u64 = 0x300;
const REG_ICR_HIGH: u64 = 0x310;
const ICR_PENDING: u32 = 1 << 12;
const REG_LVT_TIMER: u64 = 0x320;
const REG_LVT_LINT0: u64 = 0x350;
const REG_TIMER_INIT: u64 = 0x380;
const REG_TIMER_CURRENT: u64 = 0x390;
const REG_TIMER_DIVIDE: u64 = 0x3E0;
const LVT_MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 1 << 17;

/// Timer interrupts taken so far (incremented by `isr_timer`).
#[unsafe(no_mangle)]
static HV_TIMER_TICKS: AtomicU64 = AtomicU64::new(0);

/// Device interrupt slots that fired and are not yet delivered (bit = slot, see
/// `devices::irq`), set by `isr_device`.
#[unsafe(no_mangle)]
pub static HV_DEVICE_IRQS: AtomicU64 = AtomicU64::new(0);

/// Address of the EOI register, read by the interrupt stubs.
#[unsafe(no_mangle)]
static HV_LAPIC_EOI: AtomicU64 = AtomicU64::new(0xFEE0_0000 + REG_EOI);

/// The local APIC of the CPU that runs this code (every CPU's xAPIC is at the same address).
pub struct LocalApic {
    base: u64,
}

impl LocalApic {
    /// Enables the APIC (software-enable bit, spurious vector) with the timer masked.
    pub fn init() -> LocalApic {
        // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU.
        let base = unsafe { cpu::rdmsr(cpu::MSR_APIC_BASE) } & 0x000f_ffff_ffff_f000;
        HV_LAPIC_EOI.store(base + REG_EOI, Ordering::Relaxed);
        let apic = LocalApic { base };
        apic.write(REG_TPR, 0);
        apic.write(REG_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
        apic.write(REG_LVT_LINT0, LVT_MASKED);
        apic.write(REG_SVR, 0x100 | SPURIOUS_VECTOR);
        apic
    }

    fn write(&self, reg: u64, value: u32) {
        let p = (self.base + reg) as *mut u32;
        // SAFETY: `base` comes from IA32_APIC_BASE; the APIC page is identity-mapped
        // uncached by the boot page tables (entry.s), belongs to the hypervisor alone (no
        // qube maps it), and `reg` is one of the architectural register offsets above.
        unsafe { p.write_volatile(value) }
    }

    fn read(&self, reg: u64) -> u32 {
        let p = (self.base + reg) as *const u32;
        // SAFETY: as in `write`; reading these registers has no side effect.
        unsafe { p.read_volatile() }
    }

    /// Starts the timer counting down from its maximum (divide by 16), masked, for
    /// calibration; returns a reader of the elapsed count.
    pub fn start_calibration(&self) {
        self.write(REG_TIMER_DIVIDE, 0b0011);
        self.write(REG_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
        self.write(REG_TIMER_INIT, u32::MAX);
    }

    /// Counts elapsed since `start_calibration`.
    pub fn calibration_elapsed(&self) -> u32 {
        u32::MAX - self.read(REG_TIMER_CURRENT)
    }

    /// Starts the periodic timer with `count` timer ticks (divide by 16) per interrupt.
    #[allow(
        dead_code,
        reason = "the scheduler arms one-shot deadlines; kept for bring-up"
    )]
    pub fn start_periodic(&self, count: u32) {
        self.write(REG_TIMER_DIVIDE, 0b0011);
        self.write(REG_LVT_TIMER, LVT_PERIODIC | u32::from(TIMER_VECTOR));
        self.write(REG_TIMER_INIT, count.max(1));
    }

    /// Switches the timer to one-shot mode (divide by 16) with `per_ms` counts per
    /// millisecond, for [`arm_in`].
    pub fn start_oneshot(&self, per_ms: u64) {
        APIC_PER_MS.store(per_ms.max(1), Ordering::Relaxed);
        APIC_BASE.store(self.base, Ordering::Relaxed);
        self.write(REG_TIMER_DIVIDE, 0b0011);
        self.write(REG_LVT_TIMER, u32::from(TIMER_VECTOR));
    }
}

/// Timer counts per millisecond (set by `start_oneshot`).
static APIC_PER_MS: AtomicU64 = AtomicU64::new(0);
/// The APIC's base (set by `start_oneshot`; 0 before).
static APIC_BASE: AtomicU64 = AtomicU64::new(0);

/// Whether the one-shot armed by [`arm_in`] has run out (its current count is 0).
pub fn timer_expired() -> bool {
    let base = APIC_BASE.load(Ordering::Relaxed);
    base != 0 && LocalApic { base }.read(REG_TIMER_CURRENT) == 0
}

/// This CPU's one-shot timer and the deadline it was last armed for (each CPU's scheduler
/// owns one: the timer is per CPU).
pub struct Timer {
    /// The deadline (ns since boot) [`Timer::arm_until`] last armed; 0 after [`Timer::arm_in`].
    armed_until: u64,
}

impl Timer {
    /// Not armed yet.
    pub const fn new() -> Timer {
        Timer { armed_until: 0 }
    }

    /// Arms the one-shot timer for `until` (ns since boot; `now` is the time now), unless it
    /// is already armed for that very deadline: a run of exits within one slice re-arms only
    /// when the deadline moves, which spares an MMIO write and the arithmetic on every exit.
    /// Inlined: called on every entry, from two run loops (a call here showed as +20
    /// instructions per null hypercall in `cargo xtask bench --qemu`).
    #[inline(always)]
    pub fn arm_until(&mut self, now: u64, until: u64) {
        if until != 0 && self.armed_until == until {
            return;
        }
        arm_in(until.saturating_sub(now));
        self.armed_until = until;
    }

    /// As [`arm_in`], forgetting the deadline [`Timer::arm_until`] armed.
    pub fn arm_in(&mut self, ns: u64) {
        self.armed_until = 0;
        arm_in(ns);
    }
}

/// Arms this CPU's one-shot timer to interrupt in `ns` nanoseconds (at least one count, at
/// most the counter's range), replacing any earlier deadline. Does nothing before
/// `start_oneshot`.
pub fn arm_in(ns: u64) {
    let base = APIC_BASE.load(Ordering::Relaxed);
    if base == 0 {
        return;
    }
    let per_ms = u128::from(APIC_PER_MS.load(Ordering::Relaxed));
    let counts = (u128::from(ns) * per_ms / 1_000_000).clamp(1, u128::from(u32::MAX)) as u32;
    LocalApic { base }.write(REG_TIMER_INIT, counts);
}

/// This CPU's local APIC ID (xAPIC: bits 31:24 of the ID register).
pub fn id() -> u32 {
    LocalApic { base: base() }.read(REG_ID) >> 24
}

fn base() -> u64 {
    // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU.
    unsafe { cpu::rdmsr(cpu::MSR_APIC_BASE) & 0x000f_ffff_ffff_f000 }
}

/// What an inter-processor interrupt asks of its target.
#[derive(Clone, Copy, Debug)]
pub enum Ipi {
    /// INIT (level assert): the target resets and waits for a start-up IPI.
    Init,
    /// Start-up: the target begins in real mode at `page << 12`.
    Startup(u8),
    /// A fixed interrupt with this vector.
    Fixed(u8),
}

/// Sends `ipi` to the CPU whose local APIC ID is `apic_id`, after any earlier IPI of this
/// CPU has left (the ICR's delivery status). Interrupts must not send IPIs (the ICR is one
/// pair of registers per CPU): only the scheduler and the boot code do.
pub fn send(apic_id: u32, ipi: Ipi) {
    let apic = LocalApic { base: base() };
    let low = match ipi {
        Ipi::Init => 0x0000_4500,
        Ipi::Startup(page) => 0x0000_4600 | u32::from(page),
        Ipi::Fixed(vector) => 0x0000_4000 | u32::from(vector),
    };
    while apic.read(REG_ICR_LOW) & ICR_PENDING != 0 {
        core::hint::spin_loop();
    }
    apic.write(REG_ICR_HIGH, (apic_id & 0xFF) << 24);
    apic.write(REG_ICR_LOW, low);
}
