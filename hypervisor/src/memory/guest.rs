//! A qube's memory: a contiguous block of host RAM that the qube sees at guest-physical 0.
//! Every guest-supplied address or length is checked here before memory is touched.

use super::phys;
use bulkhead_hvcore::memmap::{Frames, Region};

/// A qube's RAM: the owner of its block (not `Copy`, not `Clone`).
#[derive(Debug)]
pub struct GuestMemory {
    host: Frames,
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
    /// Takes over a block from the frame allocator.
    pub fn new(host: Frames) -> GuestMemory {
        GuestMemory { host }
    }

    /// Host-physical range.
    pub fn host(&self) -> Region {
        self.host.region()
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

    /// Runs `f` over the whole memory (the qube is not running while the hypervisor is).
    pub fn with_bytes<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        phys::with_frames(&mut self.host, f)
    }

    /// Copies guest bytes `[gpa, gpa+buf.len())` into `buf`.
    pub fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let range = self.check(gpa, buf.len() as u64)?;
        self.with_bytes(|m| buf.copy_from_slice(&m[range]));
        Ok(())
    }

    /// A view for reading it while the guest may run on other CPUs (a Linux qube's vCPUs
    /// decoding an MMIO instruction).
    pub fn view(&self) -> MemView {
        MemView {
            host: self.host.region(),
        }
    }

    /// Zeroes the whole memory, then reads every word back with volatile loads (so the
    /// check is a real read of RAM, not the compiler's knowledge of the fill): returns how
    /// many bytes are not zero.
    pub fn zero_and_verify(&mut self) -> u64 {
        self.with_bytes(|m| {
            m.fill(0);
            phys::count_nonzero_volatile(m)
        })
    }
}

/// Read access to a qube's memory that any of its vCPUs may hold, on any CPU, while the
/// guest runs: volatile copies, no Rust reference to guest memory. Only a [`GuestMemory`]
/// makes one, and qube memory is never given back, so the range stays the qube's RAM.
#[derive(Clone, Copy, Debug)]
pub struct MemView {
    host: Region,
}

impl MemView {
    /// Copies guest bytes `[gpa, gpa+buf.len())` into `buf`.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let len = buf.len() as u64;
        match gpa.checked_add(len) {
            Some(end) if end <= self.host.len() => {
                phys::shared_read(self.host, gpa, buf);
                Ok(())
            }
            _ => Err(OutOfRange { gpa, len }),
        }
    }
}
