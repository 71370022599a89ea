//! Loading a Linux qube: the bzImage's protected-mode kernel, the initramfs and the command
//! line into zeroed memory, with the boot structures the 64-bit boot protocol wants (zero
//! page with e820 map and RSDP, GDT, identity page tables) and the platform's ACPI tables.
//! The layout and the structures are `bulkhead_platform::boot` and `::acpi` (pure,
//! tested); this only copies.

use super::LinuxImage;
use crate::guest::LoadError;
use crate::memory::guest::GuestMemory;
use crate::virt::LinuxEntry;
use bulkhead_platform::{acpi, boot};

/// Longest command line, with what the hypervisor appends.
const CMDLINE_BUF: usize = 2048;

/// Loads `image` into `mem` (zeroing it first) and returns the entry state.
pub fn load(mem: &mut GuestMemory, image: &LinuxImage, vcpus: u8) -> Result<LinuxEntry, LoadError> {
    let kernel = image.kernel;
    let bz = boot::parse(kernel).map_err(LoadError::Linux)?;
    let kernel_bytes = bz
        .kernel(kernel)
        .ok_or(LoadError::Linux(boot::LinuxError::KernelOutsideFile))?;
    let mut cmdline = [0u8; CMDLINE_BUF];
    let cmdline_len = compose_cmdline(&mut cmdline, image.cmdline, crate::time::tsc_khz())
        .ok_or(LoadError::Linux(boot::LinuxError::CmdlineTooLong))?;
    let layout = boot::plan(
        &bz,
        mem.size(),
        cmdline_len as u64,
        image.initrd.len() as u64,
    )
    .map_err(LoadError::Linux)?;
    let initrd = image.initrd;
    mem.with_bytes(|m| -> Result<LinuxEntry, LoadError> {
        m.fill(0);
        let at = |r: &boot::Range| r.start as usize..r.end() as usize;
        m[layout.kernel.start as usize..][..kernel_bytes.len()].copy_from_slice(kernel_bytes);
        m[at(&layout.initrd)].copy_from_slice(initrd);
        m[layout.cmdline.start as usize..][..cmdline_len].copy_from_slice(&cmdline[..cmdline_len]);
        m[layout.gdt.start as usize..][..32].copy_from_slice(&boot::gdt_bytes());
        let tables = acpi::build(&mut m[at(&layout.acpi)], layout.acpi.start, vcpus)
            .map_err(|_| LoadError::Acpi)?;
        let zp = boot::zero_page(kernel, &bz, &layout, &layout.e820(), Some(tables.rsdp))
            .map_err(LoadError::Linux)?;
        m[at(&layout.zero_page)].copy_from_slice(&zp);
        boot::build_page_tables(&mut m[at(&layout.page_tables)], &layout)
            .map_err(LoadError::Linux)?;
        Ok(layout.entry_state())
    })
}

/// The command line: the description's, then ` tsc_early_khz=<kHz>` (the guest has no timer
/// to calibrate the TSC against). Returns its length, or `None` if it does not fit.
fn compose_cmdline(buf: &mut [u8], base: &[u8], tsc_khz: u64) -> Option<usize> {
    use core::fmt::Write;
    struct Cursor<'a> {
        buf: &'a mut [u8],
        len: usize,
    }
    impl Write for Cursor<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let end = self.len.checked_add(s.len()).ok_or(core::fmt::Error)?;
            self.buf
                .get_mut(self.len..end)
                .ok_or(core::fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }
    let base = core::str::from_utf8(base)
        .ok()?
        .trim_end_matches('\0')
        .trim();
    let mut c = Cursor { buf, len: 0 };
    write!(c, "{base} tsc_early_khz={tsc_khz}").ok()?;
    Some(c.len)
}
