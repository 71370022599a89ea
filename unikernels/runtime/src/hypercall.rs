//! Hypercalls: the `VMMCALL`/`VMCALL` instruction and one safe function per call of
//! [`bulkhead_abi::hypercall`] version 2.
//!
//! The instruction is chosen once at entry from the boot info's `FLAG_VMCALL`; until then
//! (and when the boot info is not recognised) `VMMCALL` is used. The safe functions never pass an argument that breaks the ABI contract, so they
//! cannot make the hypervisor stop the qube; [`raw`] can, which is why it is `unsafe`.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bulkhead_abi::hypercall::{HcError, Hypercall, MAX_CONSOLE_WRITE, decode_result};

static USE_VMCALL: AtomicBool = AtomicBool::new(false);
/// [`defer_notifies`] is on.
static DEFER_NOTIFY: AtomicBool = AtomicBool::new(false);
/// Deferred notifications: bit `i` for local channel `i`.
static PENDING_NOTIFY: AtomicU64 = AtomicU64::new(0);

/// Chooses `VMCALL` (Intel VMX) when `vmcall`, else `VMMCALL` (AMD SVM).
#[cfg_attr(
    test,
    allow(dead_code, reason = "only `start` calls it, and only in images")
)]
pub(crate) fn select_vmcall(vmcall: bool) {
    USE_VMCALL.store(vmcall, Ordering::Relaxed);
}

/// True when hypercalls use `VMCALL`.
pub fn uses_vmcall() -> bool {
    USE_VMCALL.load(Ordering::Relaxed)
}

/// Issues hypercall `nr` with arguments `a0..a2` in `rdi`, `rsi`, `rdx` and returns `rax`
/// undecoded.
///
/// # Safety
/// 1. Every buffer the arguments describe is memory of this qube that the hypervisor may
///    access as the call's contract says; for a call that writes guest memory (none in ABI
///    version 2), the buffer must be valid for those writes.
/// 2. Arguments that break the contract (unknown number, a buffer outside the qube, a length
///    over the limit) make the hypervisor stop the qube: the caller must mean that (the
///    `testing` image does).
pub unsafe fn raw(nr: u64, a0: u64, a1: u64, a2: u64) -> u64 {
    // Deferred notifications go out before anything else reaches the hypervisor (above
    // all before a wait or a yield hands the CPU to another qube).
    if nr != Hypercall::Notify as u64 && PENDING_NOTIFY.load(Ordering::Relaxed) != 0 {
        flush_notifies();
    }
    // SAFETY: the caller's conditions, passed on.
    unsafe { raw_now(nr, a0, a1, a2) }
}

/// [`raw`] without sending the deferred notifications first.
///
/// # Safety
/// As for [`raw`].
unsafe fn raw_now(nr: u64, a0: u64, a1: u64, a2: u64) -> u64 {
    let rax: u64;
    if USE_VMCALL.load(Ordering::Relaxed) {
        // SAFETY: VMCALL exits to the hypervisor, which preserves every register but rax
        // (ABI) and touches our memory only as the call's contract allows (caller's
        // conditions 1 and 2). No `nomem`: the hypervisor may read buffers we wrote.
        unsafe {
            asm!("vmcall", inlateout("rax") nr => rax, in("rdi") a0, in("rsi") a1, in("rdx") a2,
                 options(nostack));
        }
    } else {
        // SAFETY: as for VMCALL above; VMMCALL is the AMD SVM instruction for the same exit.
        unsafe {
            asm!("vmmcall", inlateout("rax") nr => rax, in("rdi") a0, in("rsi") a1, in("rdx") a2,
                 options(nostack));
        }
    }
    rax
}

/// A call whose arguments are plain numbers (no buffers), decoded.
fn call(h: Hypercall, a0: u64) -> Result<u64, HcError> {
    call3(h, a0, 0, 0)
}

/// A call whose three arguments are plain numbers (no buffers), decoded.
fn call3(h: Hypercall, a0: u64, a1: u64, a2: u64) -> Result<u64, HcError> {
    // SAFETY: `h` is a hypercall of ABI version 2 and its arguments are numbers, not buffers,
    // for all callers (AbiVersion, Yield, WaitEvent, TimeNs, Ready, ExitCount: every u64 is
    // valid; Notify: only `crate::channel` calls it, with a local index from the boot info;
    // PciConfigRead/Write: only `crate::pci` calls them, with a device index below the boot
    // info's device count and a 4-byte aligned offset below 4096; DeviceInterrupts: only
    // `crate::pci` calls it, with a device index below that count; AdminQubeState,
    // AdminStart, AdminKill: any index is valid, the hypervisor answers Invalid or Denied),
    // so neither condition of `raw` can be broken.
    decode_result(unsafe { raw(h as u64, a0, a1, a2) })
}

/// The hypercall ABI version the hypervisor implements.
pub fn abi_version() -> u32 {
    call(Hypercall::AbiVersion, 0).map_or(0, |v| u32::try_from(v).unwrap_or(u32::MAX))
}

/// Writes `bytes` to the qube's console as one hypercall; returns how many were taken.
/// More than [`MAX_CONSOLE_WRITE`] bytes is refused here with [`HcError::Invalid`] instead
/// of reaching the hypervisor (where it would stop the qube). Most code wants
/// [`crate::console`], which buffers whole lines.
pub fn console_write(bytes: &[u8]) -> Result<usize, HcError> {
    if bytes.len() as u64 > MAX_CONSOLE_WRITE {
        return Err(HcError::Invalid);
    }
    if bytes.is_empty() {
        return Ok(0);
    }
    // SAFETY: `bytes` is a live slice of this qube's identity-mapped memory, so its address
    // is its guest-physical address and all `len` bytes lie inside the qube (1); the length
    // is within MAX_CONSOLE_WRITE and ConsoleWrite only reads the buffer (2).
    let rax = unsafe {
        raw(
            Hypercall::ConsoleWrite as u64,
            bytes.as_ptr() as u64,
            bytes.len() as u64,
            0,
        )
    };
    decode_result(rax).map(|n| (n as usize).min(bytes.len()))
}

/// Gives up the rest of the time slice.
pub fn yield_now() {
    let _ = call(Hypercall::Yield, 0);
}

/// Blocks until an event is pending or `timeout_ns` have passed
/// ([`bulkhead_abi::hypercall::WAIT_FOREVER`] for no limit); returns the pending event bits
/// (0 on timeout). [`crate::events`] wraps this so that events seen during a sleep are kept.
pub(crate) fn wait_event_ns(timeout_ns: u64) -> u64 {
    call(Hypercall::WaitEvent, timeout_ns).unwrap_or(0)
}

/// Nanoseconds since the hypervisor started.
pub fn time_ns() -> u64 {
    call(Hypercall::TimeNs, 0).unwrap_or(0)
}

/// Raises the event of local channel `local` at its peer (see `Hypercall::Notify`), at
/// once or, after [`defer_notifies`], with the qube's next other hypercall or
/// [`flush_notifies`]. An index this qube does not have stops the qube, so only
/// [`crate::channel`] calls it, with the index of a channel it opened from the boot info.
pub(crate) fn notify(local: usize) {
    if DEFER_NOTIFY.load(Ordering::Relaxed) && local < 64 {
        PENDING_NOTIFY.fetch_or(1 << local, Ordering::Relaxed);
    } else {
        let _ = call(Hypercall::Notify, local as u64);
    }
}

/// From now on (`on`), a channel's notification of its peer waits for the qube's next
/// other hypercall (a wait, a yield, reading the clock, ...) or [`flush_notifies`], and the
/// notifications of one channel in between become one: a qube that sends a batch of
/// messages to a sleeping peer makes one VM exit, not one per message. The peer cannot run
/// before this qube makes a hypercall or is preempted (one CPU), so it loses nothing it
/// would have had; a qube that loops without any hypercall after sending must call
/// [`flush_notifies`] itself. Off (the default) sends each notification at once; turning it
/// off sends what is pending.
pub fn defer_notifies(on: bool) {
    DEFER_NOTIFY.store(on, Ordering::Relaxed);
    if !on {
        flush_notifies();
    }
}

/// Sends the deferred notifications, one per channel.
pub fn flush_notifies() {
    let mut bits = PENDING_NOTIFY.swap(0, Ordering::Relaxed);
    while bits != 0 {
        let local = u64::from(bits.trailing_zeros());
        bits &= bits - 1;
        // SAFETY: only `notify` sets bits, each for the local index of a channel
        // `crate::channel` opened from the boot info, and Notify takes no buffer: neither
        // condition of `raw` can be broken.
        let _ = decode_result(unsafe { raw_now(Hypercall::Notify as u64, local, 0, 0) });
    }
}

/// Reads the 32-bit word at `offset` of assigned device `device`'s configuration space.
/// A device index the qube does not have or a bad offset stops the qube, so only
/// [`crate::pci`] calls it, after checking both.
pub(crate) fn pci_config_read(device: usize, offset: u16) -> Result<u32, HcError> {
    call3(
        Hypercall::PciConfigRead,
        device as u64,
        u64::from(offset),
        0,
    )
    .map(|v| v as u32)
}

/// Writes `value` to the word at `offset` of assigned device `device`'s configuration space
/// (through the hypervisor's filter; MSI/MSI-X programming is answered with
/// [`HcError::Denied`]). Same contract as [`pci_config_read`].
pub(crate) fn pci_config_write(device: usize, offset: u16, value: u32) -> Result<(), HcError> {
    call3(
        Hypercall::PciConfigWrite,
        device as u64,
        u64::from(offset),
        u64::from(value),
    )
    .map(|_| ())
}

/// Asks the hypervisor to deliver assigned device `device`'s interrupts (MSI, else MSI-X
/// entry 0, through VT-d interrupt remapping) as an event bit; returns that bit
/// (`bulkhead_abi::hypercall::device_event_bit(device)`), or [`HcError::Denied`] when the
/// machine has no interrupt remapping or the device neither MSI nor MSI-X (keep polling).
/// Same contract as [`pci_config_read`]: only [`crate::pci`] calls it, with an index it has.
pub(crate) fn device_interrupts(device: usize) -> Result<u32, HcError> {
    call(Hypercall::DeviceInterrupts, device as u64).and_then(|bit| {
        u32::try_from(bit)
            .ok()
            .filter(|&b| b < 64)
            .ok_or(HcError::Invalid)
    })
}

/// The admin qube only (others get [`HcError::Denied`]): the state of the qube with
/// manifest index `qube`.
pub fn admin_qube_state(qube: u8) -> Result<bulkhead_abi::hypercall::QubeState, HcError> {
    call(Hypercall::AdminQubeState, u64::from(qube))
        .map(bulkhead_abi::hypercall::QubeState::from_u64)
}

/// The admin qube only: starts the stopped qube `qube` from scratch.
pub fn admin_start(qube: u8) -> Result<(), HcError> {
    call(Hypercall::AdminStart, u64::from(qube)).map(|_| ())
}

/// The admin qube only: stops qube `qube` at once (not restarted).
pub fn admin_kill(qube: u8) -> Result<(), HcError> {
    call(Hypercall::AdminKill, u64::from(qube)).map(|_| ())
}

/// VM exits this qube has caused since it started (for measurements).
pub fn exit_count() -> u64 {
    call(Hypercall::ExitCount, 0).unwrap_or(0)
}

/// The benchmarks' mark: `nop dword ptr [rax + rax*1 + 0x4b4d4842]`, a NOP whose
/// displacement no compiler emits, so QEMU's counting plugin (`xtask/qemu-counter`) writes
/// down its counters each time it runs. On a CPU it does nothing; it is not a VM exit.
pub fn mark() {
    // SAFETY: a NOP: it reads no memory (the operand is never accessed), writes no register
    // and leaves the flags alone.
    unsafe {
        core::arch::asm!(
            ".byte 0x0f, 0x1f, 0x84, 0x00, 0x42, 0x48, 0x4d, 0x4b",
            options(nomem, nostack, preserves_flags)
        );
    }
}

/// Tells the hypervisor the qube has finished starting (it logs `qube NAME ready`).
pub fn ready() {
    let _ = call(Hypercall::Ready, 0);
}

/// Stops the qube with `status` (0 = success). Pending console output is flushed first.
pub fn exit(status: u64) -> ! {
    crate::console::flush();
    loop {
        let _ = call(Hypercall::Exit, status);
        // Exit does not return; if a broken hypervisor resumes us anyway, ask again.
        core::hint::spin_loop();
    }
}
