//! Which CPUs a thread runs on: the affinity calls, `sched_getcpu` and the online count,
//! which the standard library does not wrap (it has only `available_parallelism`). For the
//! `cpu-probe` self-test (`crate::cpuprobe`).
//!
//! A set of CPUs crosses the system calls as a [`CpuMask`]: 1024 bits, the size of glibc's
//! `cpu_set_t` and more than the kernel's CPU numbers reach in an AppVM, so no CPU is cut
//! off; bit `n` of word `n / 64` is CPU `n`, as the kernel reads and writes it.

use std::io;

/// Bits in a [`CpuMask`].
pub const MASK_BITS: usize = 1024;

/// A set of CPUs in the kernel's layout for the affinity calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct CpuMask([u64; MASK_BITS / 64]);

impl CpuMask {
    /// The set holding `cpus` (numbers at or past [`MASK_BITS`] are left out).
    pub fn of(cpus: &[usize]) -> CpuMask {
        let mut m = CpuMask([0; MASK_BITS / 64]);
        for &c in cpus.iter().filter(|&&c| c < MASK_BITS) {
            m.0[c / 64] |= 1 << (c % 64);
        }
        m
    }

    /// The CPUs in the set, in ascending order.
    pub fn cpus(&self) -> Vec<usize> {
        (0..MASK_BITS)
            .filter(|&c| self.0[c / 64] & 1 << (c % 64) != 0)
            .collect()
    }
}

/// The CPUs the calling thread may run on (`sched_getaffinity`). Called before the program
/// starts threads of its own, this is the set the process was started with.
pub fn allowed() -> io::Result<Vec<usize>> {
    let mut mask = CpuMask::of(&[]);
    // SAFETY: (1) pid 0 names the calling thread; (2) the size passed is `mask`'s own, and
    // the kernel writes at most that many bytes, into `mask`, which outlives the call;
    // (3) `CpuMask` is `repr(C)` plain words, so any bits the kernel writes are a valid
    // value. The result is checked below.
    let rc = unsafe {
        libc::sched_getaffinity(
            0,
            std::mem::size_of::<CpuMask>(),
            (&raw mut mask).cast::<libc::cpu_set_t>(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(mask.cpus())
}

/// Lets the calling thread run on `cpu` only (`sched_setaffinity`); the other threads of
/// the process keep their own sets.
pub fn pin_this_thread(cpu: usize) -> io::Result<()> {
    if cpu >= MASK_BITS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is past the {MASK_BITS} a mask holds"),
        ));
    }
    let mask = CpuMask::of(&[cpu]);
    // SAFETY: (1) pid 0 names the calling thread only; (2) the kernel reads `size_of` bytes
    // from `mask`, which is that size and lives across the call, and does not keep the
    // pointer. The result is checked below (EINVAL when the CPU is not online).
    let rc = unsafe {
        libc::sched_setaffinity(
            0,
            std::mem::size_of::<CpuMask>(),
            (&raw const mask).cast::<libc::cpu_set_t>(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The CPU the calling thread is running on at the time of the call (`sched_getcpu`).
pub fn current() -> io::Result<usize> {
    // SAFETY: sched_getcpu takes no arguments and touches no memory of the caller; it
    // returns -1 with errno set on failure, checked below.
    let rc = unsafe { libc::sched_getcpu() };
    usize::try_from(rc).map_err(|_| io::Error::last_os_error())
}

/// How many CPUs are online (`sysconf(_SC_NPROCESSORS_ONLN)`).
pub fn online_count() -> io::Result<usize> {
    // SAFETY: sysconf takes a constant name and touches no memory of the caller; it
    // returns -1 on failure, checked below.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_hold_the_cpus_they_were_made_of() {
        assert_eq!(CpuMask::of(&[]).cpus(), Vec::<usize>::new());
        assert_eq!(CpuMask::of(&[3, 0, 64, 1023]).cpus(), [0, 3, 64, 1023]);
        assert_eq!(CpuMask::of(&[1024, 5000]).cpus(), Vec::<usize>::new());
        assert_eq!(CpuMask::of(&[65]).0[1], 0b10);
        assert_eq!(std::mem::size_of::<CpuMask>(), 128);
        assert_eq!(
            std::mem::size_of::<CpuMask>(),
            std::mem::size_of::<libc::cpu_set_t>()
        );
    }

    #[test]
    fn a_pinned_thread_runs_on_its_cpu() {
        let mine = allowed().unwrap();
        assert!(!mine.is_empty());
        assert!(online_count().unwrap() >= 1);
        let last = *mine.last().unwrap();
        let seen = std::thread::spawn(move || {
            pin_this_thread(last).unwrap();
            (allowed().unwrap(), current().unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(seen, (vec![last], last));
        assert!(pin_this_thread(MASK_BITS).is_err());
    }
}
