//! Hypercall ABI, version 3 (version 1 plus the PCI configuration calls 9 and 10, the admin
//! calls 11 to 13, and the device interrupt call 14).
//!
//! A guest issues a hypercall with `VMMCALL` (AMD) or `VMCALL` (Intel):
//!
//! | register | meaning                                   |
//! |----------|-------------------------------------------|
//! | `rax`    | hypercall number ([`Hypercall`])          |
//! | `rdi`    | argument 0                                |
//! | `rsi`    | argument 1                                |
//! | `rdx`    | argument 2                                |
//! | `rax`    | on return: result, see [`decode_result`]  |
//!
//! All other registers are preserved. Pointers are guest-physical addresses; the Bulkhead
//! runtime identity-maps its memory, so for a unikernel a pointer is its own address.
//!
//! The hypervisor trusts no argument. A hypercall whose arguments break the contract
//! (unknown number, a buffer outside the qube's memory, a length over the limit) is a fault
//! of the calling qube: the hypervisor stops the qube and logs the reason, exactly as it does
//! for a triple fault (the blame rule). Errors a well-behaved guest can meet at run time are
//! returned as an [`HcError`] instead.

/// Version of this ABI. A guest reads it with [`Hypercall::AbiVersion`] and in
/// [`crate::boot_info::BootInfo::abi_version`].
pub const ABI_VERSION: u32 = 3;

/// Largest buffer accepted by [`Hypercall::ConsoleWrite`], in bytes.
pub const MAX_CONSOLE_WRITE: u64 = 4096;

/// `WaitEvent` timeout meaning "wait until an event arrives".
pub const WAIT_FOREVER: u64 = u64::MAX;

/// Hypercall numbers (in `rax`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Hypercall {
    /// Returns [`ABI_VERSION`].
    AbiVersion = 0,
    /// Writes `len = arg1` bytes at guest-physical `arg0` to the qube's console.
    /// Returns the number of bytes written.
    ConsoleWrite = 1,
    /// Gives up the rest of the time slice. Returns 0.
    Yield = 2,
    /// Blocks until an event is pending or `arg0` nanoseconds have passed
    /// ([`WAIT_FOREVER`] for no limit). Returns the pending event bits (and clears them),
    /// 0 when the time ran out. The qube costs nothing while it waits.
    WaitEvent = 3,
    /// Returns nanoseconds since the hypervisor started.
    TimeNs = 4,
    /// Stops the qube with exit status `arg0` (0 = success). Does not return.
    Exit = 5,
    /// Tells the hypervisor the qube has finished starting; it logs `qube NAME ready`.
    Ready = 6,
    /// Raises the event of local channel `arg0` at the peer: wakes it if it waits, and is
    /// returned (coalesced, never lost) by its next `WaitEvent`. Returns 0. A channel index
    /// the qube does not have is a fault.
    Notify = 7,
    /// Returns how many VM exits this qube has caused since it started (for measurements;
    /// a qube learns nothing about other qubes from it).
    ExitCount = 8,
    /// Reads the 32-bit word at offset `arg1` (4-byte aligned, below 4096) of the
    /// configuration space of the qube's assigned device `arg0` (its index in
    /// `BootInfo::devices`). BARs read back as the hypervisor emulates them (sizing works;
    /// the device never moves). A device index the qube does not have, or a bad offset, is a
    /// fault.
    PciConfigRead = 9,
    /// Writes `arg2` (low 32 bits) to the word at offset `arg1` of device `arg0`'s
    /// configuration space, through the hypervisor's filter: BAR writes only change the
    /// emulated value, the command register keeps I/O decoding off, and MSI/MSI-X
    /// programming is refused with [`HcError::Denied`]. Returns 0.
    PciConfigWrite = 10,
    /// The admin qube only (every other qube gets [`HcError::Denied`]): the state of the
    /// qube with manifest index `arg0`, packed as [`QubeState::to_u64`].
    /// [`HcError::Invalid`] past the last qube.
    AdminQubeState = 11,
    /// The admin qube only: starts the stopped qube `arg0` from scratch (its channels reset,
    /// so its peers see a new start). Returns 0; [`HcError::Busy`] if it runs,
    /// [`HcError::Invalid`] for the admin qube itself or no such qube.
    AdminStart = 12,
    /// The admin qube only: stops qube `arg0` at once. It is not restarted whatever its
    /// policy; a disposable's memory is wiped as after any stop; its channels are reset and
    /// its peers told. Returns 0; [`HcError::Busy`] if it is already stopped,
    /// [`HcError::Invalid`] for the admin qube itself or no such qube.
    AdminKill = 13,
    /// Asks for the interrupts of the qube's assigned device `arg0` (its index in
    /// `BootInfo::devices`): the hypervisor programs the device's MSI (or else MSI-X entry
    /// 0, unmasked, every other entry masked) with a remappable message whose interrupt
    /// remapping entry accepts it only from that device and sends it to the qube's CPU. From
    /// then on each interrupt raises event bit [`device_event_bit`]`(arg0)`, which the call
    /// returns; the qube acknowledges causes at the device itself (the message is
    /// edge-triggered). [`HcError::Denied`] when the machine has no interrupt remapping or
    /// the device has neither MSI nor MSI-X: the qube keeps polling. Calling it again is
    /// harmless. A device index the qube does not have is a fault.
    DeviceInterrupts = 14,
}

/// The first event bit of device interrupts (channels use the bits below
/// `MAX_CHANNELS_PER_QUBE`).
pub const DEVICE_EVENT_BASE: u32 = 56;

/// The event bit [`Hypercall::DeviceInterrupts`] raises for device `index`.
pub const fn device_event_bit(index: usize) -> u32 {
    DEVICE_EVENT_BASE + index as u32
}

/// What [`Hypercall::AdminQubeState`] reports of a qube.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QubeState {
    /// It runs (or waits for an event); false when stopped.
    pub running: bool,
    /// It said it finished starting ([`Hypercall::Ready`], or a Linux agent's ready).
    pub ready: bool,
    /// How often it was restarted (saturating at 65535).
    pub restarts: u16,
    /// Milliseconds since it last started (0 when stopped; saturating at 2^39 - 1).
    pub uptime_ms: u64,
}

impl QubeState {
    /// Bit 0 running, bit 1 ready, bits 8-23 restarts, bits 24-62 uptime in ms (bit 63 stays clear: a result is non-negative).
    pub const fn to_u64(self) -> u64 {
        let uptime = if self.uptime_ms > (1 << 39) - 1 {
            (1 << 39) - 1
        } else {
            self.uptime_ms
        };
        self.running as u64 | (self.ready as u64) << 1 | (self.restarts as u64) << 8 | uptime << 24
    }

    /// The inverse of [`QubeState::to_u64`] (bits 2-7 ignored).
    pub const fn from_u64(v: u64) -> QubeState {
        QubeState {
            running: v & 1 != 0,
            ready: v & 2 != 0,
            restarts: (v >> 8) as u16,
            uptime_ms: v >> 24,
        }
    }
}

impl Hypercall {
    /// Decodes a hypercall number.
    pub const fn from_u64(n: u64) -> Option<Hypercall> {
        Some(match n {
            0 => Hypercall::AbiVersion,
            1 => Hypercall::ConsoleWrite,
            2 => Hypercall::Yield,
            3 => Hypercall::WaitEvent,
            4 => Hypercall::TimeNs,
            5 => Hypercall::Exit,
            6 => Hypercall::Ready,
            7 => Hypercall::Notify,
            8 => Hypercall::ExitCount,
            9 => Hypercall::PciConfigRead,
            10 => Hypercall::PciConfigWrite,
            11 => Hypercall::AdminQubeState,
            12 => Hypercall::AdminStart,
            13 => Hypercall::AdminKill,
            14 => Hypercall::DeviceInterrupts,
            _ => return None,
        })
    }

    /// Name used in log lines.
    pub const fn name(self) -> &'static str {
        match self {
            Hypercall::AbiVersion => "abi_version",
            Hypercall::ConsoleWrite => "console_write",
            Hypercall::Yield => "yield",
            Hypercall::WaitEvent => "wait_event",
            Hypercall::TimeNs => "time_ns",
            Hypercall::Exit => "exit",
            Hypercall::Ready => "ready",
            Hypercall::Notify => "notify",
            Hypercall::ExitCount => "exit_count",
            Hypercall::PciConfigRead => "pci_config_read",
            Hypercall::PciConfigWrite => "pci_config_write",
            Hypercall::AdminQubeState => "admin_qube_state",
            Hypercall::AdminStart => "admin_start",
            Hypercall::AdminKill => "admin_kill",
            Hypercall::DeviceInterrupts => "device_interrupts",
        }
    }
}

/// Errors returned to a guest, as negative values in `rax`. The numbers are fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i64)]
pub enum HcError {
    /// The operation is not available to this qube.
    Denied = -1,
    /// A resource is exhausted; try again later.
    Busy = -2,
    /// An argument is out of range (for calls where that is recoverable).
    Invalid = -3,
}

impl HcError {
    /// Decodes a negative result.
    pub const fn from_i64(v: i64) -> Option<HcError> {
        match v {
            -1 => Some(HcError::Denied),
            -2 => Some(HcError::Busy),
            -3 => Some(HcError::Invalid),
            _ => None,
        }
    }
}

/// Encodes a result for `rax`: values are non-negative, errors negative.
pub const fn encode_result(r: Result<u64, HcError>) -> u64 {
    match r {
        Ok(v) => v & (i64::MAX as u64),
        Err(e) => e as i64 as u64,
    }
}

/// Decodes `rax` after a hypercall.
pub const fn decode_result(rax: u64) -> Result<u64, HcError> {
    let v = rax as i64;
    if v >= 0 {
        Ok(rax)
    } else {
        match HcError::from_i64(v) {
            Some(e) => Err(e),
            None => Err(HcError::Invalid),
        }
    }
}

/// Exit status a runtime reports when the guest panicked.
pub const EXIT_PANIC: u64 = 101;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn numbers_round_trip() {
        for n in 0..64 {
            if let Some(h) = Hypercall::from_u64(n) {
                assert_eq!(h as u64, n);
            }
        }
        assert_eq!(Hypercall::from_u64(13), Some(Hypercall::AdminKill));
        assert_eq!(Hypercall::from_u64(14), Some(Hypercall::DeviceInterrupts));
        assert_eq!(Hypercall::from_u64(15), None);
        assert_eq!(Hypercall::from_u64(u64::MAX), None);
    }

    proptest! {
        #[test]
        fn qube_states_round_trip(running: bool, ready: bool, restarts: u16, uptime_ms in 0u64..1 << 39) {
            let s = QubeState { running, ready, restarts, uptime_ms };
            prop_assert_eq!(QubeState::from_u64(s.to_u64()), s);
            // Fits a non-negative result.
            prop_assert_eq!(decode_result(encode_result(Ok(s.to_u64()))), Ok(s.to_u64()));
        }

        #[test]
        fn long_uptimes_saturate(uptime_ms in 1u64 << 39..) {
            let s = QubeState { running: true, ready: true, restarts: 1, uptime_ms };
            prop_assert_eq!(QubeState::from_u64(s.to_u64()).uptime_ms, (1 << 39) - 1);
        }

        #[test]
        fn results_round_trip(v in 0u64..=(i64::MAX as u64)) {
            prop_assert_eq!(decode_result(encode_result(Ok(v))), Ok(v));
        }
    }

    #[test]
    fn device_event_bits_sit_above_every_channel_and_within_the_word() {
        let max = crate::boot_info::MAX_DEVICES_PER_QUBE;
        assert!(DEVICE_EVENT_BASE as usize >= crate::channel::MAX_CHANNELS_PER_QUBE);
        assert!(device_event_bit(max - 1) < 64);
    }

    #[test]
    fn errors_round_trip() {
        for e in [HcError::Denied, HcError::Busy, HcError::Invalid] {
            assert_eq!(decode_result(encode_result(Err(e))), Err(e));
        }
    }
}
