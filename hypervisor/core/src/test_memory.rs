//! Test support: physical memory as a byte vector, for the parsers that read through
//! [`PhysRead`](crate::bootinfo::PhysRead).

extern crate std;
use crate::bootinfo::PhysRead;
use std::vec::Vec;

/// Physical memory from 0 to `self.0.len()`.
pub struct Mem(pub Vec<u8>);

impl PhysRead for Mem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let Ok(a) = usize::try_from(addr) else {
            return false;
        };
        match a.checked_add(buf.len()).and_then(|e| self.0.get(a..e)) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

/// Writes `v` at `at`.
pub fn put(m: &mut [u8], at: usize, v: &[u8]) {
    m[at..at + v.len()].copy_from_slice(v);
}
