//! A qube's memory: a contiguous block of host RAM that the qube sees at guest-physical 0.
//! Every guest-supplied address or length is checked here before memory is touched.

use super::phys;
use bulkhead_hvcore::memmap::Region;

/// A qube's RAM.
#[derive(Clone, Copy, Debug)]
pub struct GuestMemory {
    host: Region,
}

/// A guest address range outside the qube's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange {
    /// Guest-physical start.
    pub gpa: u64,
    /// Length.
    pub len: u64,
}

impl GuestMemory {
    /// Wraps a block the caller owns (from the frame allocator, used for nothing else).
    pub fn new(host: Region) -> GuestMemory {
        GuestMemory { host }
    }

    /// Host-physical range.
    pub fn host(&self) -> Region {
        self.host
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.host.len()
    }

    fn check(&self, gpa: u64, len: u64) -> Result<core::ops::Range<usize>, OutOfRange> {
        match gpa.checked_add(len) {
            Some(end) if end <= self.size() => Ok(gpa as usize..end as usize),
            _ => Err(OutOfRange { gpa, len }),
        }
    }

    /// Runs `f` over the whole memory. The qube must not be running (single CPU: it is not
    /// while the hypervisor executes).
    pub fn with_bytes<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        // SAFETY: `host` came from the frame allocator for this qube alone (the only
        // constructor's contract), and the qube is not running while the hypervisor runs.
        unsafe { phys::with_region(self.host, f) }
    }

    /// Copies guest bytes `[gpa, gpa+buf.len())` into `buf`.
    pub fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let range = self.check(gpa, buf.len() as u64)?;
        self.with_bytes(|m| buf.copy_from_slice(&m[range]));
        Ok(())
    }

    /// Zeroes the whole memory, then reads every word back with volatile loads (so the
    /// check is a real read of RAM, not the compiler's knowledge of the fill): returns how
    /// many bytes are not zero.
    pub fn zero_and_verify(&mut self) -> u64 {
        self.with_bytes(|m| {
            m.fill(0);
            let mut nonzero = 0u64;
            for chunk in m.chunks_exact(8) {
                // SAFETY: `chunk` is 8 readable bytes of this qube's memory (borrowed from
                // `with_bytes`); an unaligned volatile read of a [u8; 8] is always valid.
                let word = unsafe { core::ptr::read_volatile(chunk.as_ptr().cast::<[u8; 8]>()) };
                nonzero += word.iter().filter(|&&b| b != 0).count() as u64;
            }
            nonzero
        })
    }
}
