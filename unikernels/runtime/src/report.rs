//! The start-up report: what a qube prints about itself before it says it is ready.

use alloc::vec::Vec;
use core::fmt;

use crate::boot::Boot;

/// A byte count printed with a binary unit: `64 MiB`, `1.9 MiB`, `72 KiB`, `100 B`. Below
/// 10 of a unit one decimal is shown; values are rounded down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u32); 3] = [("GiB", 30), ("MiB", 20), ("KiB", 10)];
        for (unit, shift) in UNITS {
            let scale = 1u64 << shift;
            if self.0 >= scale {
                let whole = self.0 >> shift;
                let tenths = ((self.0 & (scale - 1)) * 10) >> shift;
                return if whole < 10 && tenths > 0 {
                    write!(f, "{whole}.{tenths} {unit}")
                } else {
                    write!(f, "{whole} {unit}")
                };
            }
        }
        write!(f, "{} B", self.0)
    }
}

/// Allocates a vector of 1..=`n`, sums it and checks the sum: proof that the heap works.
/// Returns the sum, or `None` if the allocation failed or the sum is wrong.
pub fn heap_check(n: u64) -> Option<u64> {
    let mut v: Vec<u64> = Vec::new();
    v.try_reserve_exact(usize::try_from(n).ok()?).ok()?;
    v.extend(1..=n);
    let sum: u64 = v.iter().sum();
    (sum == n * (n + 1) / 2).then_some(sum)
}

/// The whole life of a placeholder system qube (one whose real job is a later issue):
/// report what it is and what it was given, say ready, then log every event it receives.
pub fn placeholder(boot: &Boot, role: &str) -> ! {
    report_boot_info(boot, role);
    crate::ready();
    loop {
        let events = crate::wait_event(None);
        crate::info!("events {events}");
    }
}

/// Logs what this qube is and what the hypervisor gave it, one fact per line. `role` says
/// what the image is for (for example "net: will own the network card").
pub fn report_boot_info(boot: &Boot, role: &str) {
    let image = boot.image();
    let heap = boot.heap();
    crate::info!("{role}");
    crate::info!(
        "qube {} (id {}), label {}",
        boot.name(),
        boot.qube_id(),
        boot.label_name()
    );
    crate::info!(
        "memory {} ({:#x} bytes)",
        Size(boot.mem_size()),
        boot.mem_size()
    );
    crate::info!(
        "image {:#x}..{:#x} ({})",
        image.start,
        image.end,
        Size(image.end - image.start)
    );
    crate::info!(
        "heap {:#x}..{:#x} ({})",
        heap.start,
        heap.end,
        Size(boot.heap_size())
    );
    crate::info!("stack top {:#x}", boot.stack_top());
    crate::info!("restart count {}", boot.restart_count());
    crate::info!("args \"{}\"", boot.args().as_str());
    crate::info!(
        "abi version {} (boot info), {} (hypercall), {}",
        boot.abi_version(),
        crate::abi_version(),
        if boot.uses_vmcall() {
            "vmcall"
        } else {
            "vmmcall"
        }
    );
    match heap_check(1000) {
        Some(sum) => crate::info!("heap check: Vec of 1..=1000 sums to {sum} (ok)"),
        None => crate::error!("heap check FAILED: could not allocate or sum 1000 u64"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_the_largest_whole_unit() {
        assert_eq!(Size(0).to_string(), "0 B");
        assert_eq!(Size(1023).to_string(), "1023 B");
        assert_eq!(Size(1024).to_string(), "1 KiB");
        assert_eq!(Size(72 * 1024 + 5).to_string(), "72 KiB");
        assert_eq!(Size(64 << 20).to_string(), "64 MiB");
        assert_eq!(Size(3 << 30).to_string(), "3 GiB");
        assert_eq!(Size(1_996_352).to_string(), "1.9 MiB");
        assert_eq!(Size((1 << 20) + 1).to_string(), "1 MiB");
        assert_eq!(Size(u64::MAX).to_string(), "17179869183 GiB");
    }

    #[test]
    fn heap_check_sums() {
        assert_eq!(heap_check(1000), Some(500_500));
        assert_eq!(heap_check(0), Some(0));
    }
}
