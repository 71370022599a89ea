//! The misbehaviours, each a safe function around the instruction or hypercall that breaks
//! the qube's contract with the hypervisor. Every one is meant to get this qube stopped by
//! the hypervisor; none can corrupt memory the Rust code of this image relies on.

use alloc::boxed::Box;
use core::arch::asm;

use bulkhead_abi::boot_info::layout;
use bulkhead_abi::hypercall::{Hypercall, MAX_CONSOLE_WRITE};
use bulkhead_rt::Boot;
use bulkhead_rt::info;

/// Length of the `huge-write` console write: one byte over the limit.
pub const HUGE_WRITE_LEN: usize = MAX_CONSOLE_WRITE as usize + 1;

/// Recurses with a 4 KiB frame until the stack runs out: the page below the stack is not
/// mapped (the hypervisor's guard), so the overflow faults there, and with no IDT that is a
/// triple fault, instead of the frames running on into the heap. Returns the depth reached
/// if it ever returns (it should not).
pub fn overflow_stack(depth: u64) -> u64 {
    let mut frame = [0u8; 4096];
    frame[0] = depth as u8;
    let frame = core::hint::black_box(frame);
    let deeper = overflow_stack(core::hint::black_box(depth + 1));
    deeper + u64::from(frame[(depth % 4096) as usize])
}

/// Loads an IDT with limit 0 and executes `int3`: the #BP cannot be delivered, nor the #GP
/// nor the #DF that follow, so the CPU shuts down (a triple fault).
pub fn triple_fault() {
    #[repr(C, packed)]
    struct Idtr {
        limit: u16,
        base: u64,
    }
    let empty = Idtr { limit: 0, base: 0 };
    // SAFETY: `lidt` only reads the 10-byte descriptor, which lives on our stack for the
    // duration of the asm. The CPU never delivers an interrupt to this qube (IF=0, no IDT
    // before) so an empty IDT changes nothing but what the next exception does; `int3` then
    // raises the exception, and the resulting triple fault ends the qube before any Rust code
    // runs again. If the hypervisor resumed us anyway, no register or memory was changed.
    unsafe {
        asm!("lidt [{idtr}]", "int3", idtr = in(reg) &raw const empty, options(nostack));
    }
}

/// Disables interrupts and loops forever without a hypercall; only preemption by the
/// hypervisor's timer can take the CPU back.
pub fn spin() -> ! {
    // SAFETY: `cli` clears IF, which is already clear in a qube (interrupts are off at
    // entry), and the loop touches no memory and never returns.
    unsafe {
        asm!("cli", "2:", "jmp 2b", options(noreturn, nomem, nostack));
    }
}

/// Issues hypercall 0xdead (no such number); returns `rax` if the hypervisor does not stop
/// the qube.
pub fn bad_hypercall() -> u64 {
    // SAFETY: (1) no argument describes a buffer; (2) an unknown number stops the qube, which
    // is what the caller asks for.
    unsafe { bulkhead_rt::hypercall::raw(0xdead, 0, 0, 0) }
}

/// Issues ConsoleWrite with a buffer at `addr` of `len` bytes, unchecked.
pub fn console_write_raw(addr: u64, len: u64) -> u64 {
    // SAFETY: (1) ConsoleWrite only reads guest memory, so a bad buffer cannot make the
    // hypervisor write to this qube; (2) a buffer outside the qube or a length over the limit
    // stops the qube, which is what the callers (`bad-pointer`, `huge-write`) ask for.
    unsafe { bulkhead_rt::hypercall::raw(Hypercall::ConsoleWrite as u64, addr, len, 0) }
}

/// Writes to I/O port 0x80 (the POST port); qubes have no I/O ports.
pub fn io_port() {
    // SAFETY: `out` to port 0x80 writes no memory; in a qube the I/O access traps to the
    // hypervisor, which stops the qube.
    unsafe {
        asm!("out 0x80, al", in("al") 0u8, options(nomem, nostack, preserves_flags));
    }
}

/// Reads I/O port `port` with a raw `in` (not through the runtime, which would refuse a port
/// the qube does not own).
pub fn in_port(port: u16) -> u8 {
    let value: u8;
    // SAFETY: `in` reads a device register into al and writes no memory; on a port this qube
    // does not own it traps to the hypervisor, which stops the qube.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags));
    }
    value
}

/// Reads the EFER MSR (0xC000_0080); qubes have no MSR access.
pub fn read_efer() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: `rdmsr` reads a model-specific register into edx:eax and writes no memory; in
    // a qube it traps to the hypervisor, which stops the qube.
    unsafe {
        asm!("rdmsr", in("ecx") 0xC000_0080u32, out("eax") lo, out("edx") hi,
             options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Executes `VMRUN` with `rax` = 0. Under SVM the VMRUN intercept is mandatory, so the
/// hypervisor sees it before the CPU checks anything; on Intel it raises #UD (a triple fault
/// here, with no IDT).
pub fn vmrun() {
    // SAFETY: the instruction exits to the hypervisor (or faults) before it reads the VMCB
    // address in rax; it writes no memory of this program. Registers it might change in a
    // nested-virtualisation world are not used afterwards: declared clobbered below.
    unsafe {
        asm!("vmrun", inout("rax") 0u64 => _, options(nostack));
    }
}

/// Guest-physical address the `foreign-memory` mode maps: 3 GiB, far above any qube's memory.
const FOREIGN: u64 = 0xC000_0000;
/// Bits 12..52 of a page-table entry: the physical address.
const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;
/// Present, writable, page size (2 MiB) bits.
const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const PAGE_SIZE: u64 = 1 << 7;
/// The PDPT, second page of the page-table area (PML4 at PAGE_TABLES).
const PDPT: u64 = layout::PAGE_TABLES + 0x1000;

#[repr(C, align(4096))]
struct PageTable([u64; 512]);

/// Maps guest-physical [`FOREIGN`] (memory this qube does not own) at the same virtual
/// address through a new page directory linked from `PDPT[3]`, then reads and writes it.
/// Returns an error (without misbehaving) if the qube's own memory reaches 3 GiB or the page
/// tables do not look as the layout says.
pub fn foreign_memory(boot: &Boot) -> Result<(), &'static str> {
    if boot.mem_size() > FOREIGN {
        return Err("this qube's own memory reaches 3 GiB; nothing foreign to map there");
    }
    let pdpt = core::ptr::with_exposed_provenance_mut::<u64>(PDPT as usize);
    // SAFETY: the PDPT page at layout::PAGE_TABLES + 0x1000 is inside this qube's memory,
    // identity-mapped by the 2 MiB page at 0 and 8-byte aligned; entries 0 and 3 are in
    // the page. The hypervisor wrote it before entry; no Rust reference points at it.
    let (pdpt0, pdpt3) = unsafe { (pdpt.read_volatile(), pdpt.add(3).read_volatile()) };
    if pdpt0 & PRESENT == 0 {
        return Err("PDPT[0] is not present");
    }
    if pdpt3 & PRESENT != 0 {
        return Err("PDPT[3] is already in use");
    }
    let pd0 = core::ptr::with_exposed_provenance::<u64>((pdpt0 & ADDR_MASK) as usize);
    if (pdpt0 & ADDR_MASK) >= boot.mem_size() {
        return Err("PDPT[0] points outside this qube");
    }
    // SAFETY: PDPT[0] is present and points inside this qube's memory (checked), which is
    // identity-mapped; a page directory is 4 KiB aligned so entry 0 is aligned and in it.
    let pde0 = unsafe { pd0.read_volatile() };
    if pde0 & (PRESENT | PAGE_SIZE) != PRESENT | PAGE_SIZE {
        return Err("PD[0] is not a present 2 MiB page");
    }
    // The new entries copy the flags the hypervisor uses (U, NX, ...) and change the address.
    let mut pd = Box::new(PageTable([0; 512]));
    pd.0[0] = FOREIGN | (pde0 & !ADDR_MASK & !(1 << 12)) | PRESENT | WRITABLE | PAGE_SIZE;
    let pd_addr = Box::into_raw(pd).addr() as u64;
    let new_pdpt3 = pd_addr | (pdpt0 & !ADDR_MASK) | PRESENT | WRITABLE;
    info!(
        "testing: mapping guest-physical {FOREIGN:#x} (not ours) through a new PD at \
         {pd_addr:#x} in PDPT[3] = {new_pdpt3:#x}, then reloading CR3"
    );
    // SAFETY: (1) PDPT[3] is in the PDPT page (see above) and was not present, so no
    // existing mapping of this qube changes; (2) the new page directory is a leaked heap
    // allocation, 4 KiB aligned, identity-mapped and never freed, so it stays valid as a
    // page table; (3) reloading CR3 with its own value only flushes the TLB.
    unsafe {
        pdpt.add(3).write_volatile(new_pdpt3);
        asm!("mov {t}, cr3", "mov cr3, {t}", t = out(reg) _, options(nostack, preserves_flags));
    }
    let foreign = core::ptr::with_exposed_provenance_mut::<u64>(FOREIGN as usize);
    info!("testing: reading {FOREIGN:#x}");
    // SAFETY: the address is now mapped (above) to guest-physical memory this qube does not
    // own; the hypervisor's nested page tables have no entry for it, so the access stops the
    // qube. No Rust object lives at this address, so neither the read nor the write below can
    // change memory this program relies on.
    let value = unsafe { foreign.read_volatile() };
    info!("testing: read {value:#x} from {FOREIGN:#x}; now writing to it");
    // SAFETY: as for the read.
    unsafe { foreign.write_volatile(0x5757_5757_5757_5757) };
    info!("testing: wrote to {FOREIGN:#x}");
    Ok(())
}

/// Maps the channel window that follows this qube's last channel (a window this qube was not
/// given; in another qube the same window may hold that qube's channel) with a 2 MiB page in
/// the page directory that holds its own windows, then reads it. The hypervisor has no
/// nested mapping there for this qube, so the read must stop it.
pub fn snoop_window(boot: &Boot) -> Result<(), &'static str> {
    use bulkhead_abi::channel::{WINDOW_BASE, window};
    let own = boot.channels().len();
    if own == 0 {
        return Err("snoop needs one channel of its own (its windows' page directory)");
    }
    let target = window(own);
    let pdpt = core::ptr::with_exposed_provenance_mut::<u64>(PDPT as usize);
    let pdpt_index = ((WINDOW_BASE >> 30) & 511) as usize;
    // SAFETY: the PDPT page is inside this qube's memory, identity-mapped and aligned (see
    // `foreign_memory`); `pdpt_index` < 512.
    let entry = unsafe { pdpt.add(pdpt_index).read_volatile() };
    let pd_addr = entry & ADDR_MASK;
    if entry & PRESENT == 0 || pd_addr >= boot.mem_size() {
        return Err("the windows' page directory is missing or outside this qube");
    }
    let pd = core::ptr::with_exposed_provenance_mut::<u64>(pd_addr as usize);
    let pd_index = ((target >> 21) & 511) as usize;
    // SAFETY: the page directory is inside this qube's memory (checked), identity-mapped and
    // 4 KiB aligned; `pd_index` < 512.
    let old = unsafe { pd.add(pd_index).read_volatile() };
    if old & PRESENT != 0 {
        return Err("the window after ours is already mapped in our own tables");
    }
    info!("testing: mapping channel window {target:#x} (not ours) and reading it");
    // SAFETY: (1) the entry was not present, so no mapping this program uses changes; (2) the
    // new 2 MiB entry points at guest-physical `target`, where no Rust object lives; (3)
    // reloading CR3 with its own value only flushes the TLB.
    unsafe {
        pd.add(pd_index)
            .write_volatile(target | PRESENT | WRITABLE | PAGE_SIZE);
        asm!("mov {t}, cr3", "mov cr3, {t}", t = out(reg) _, options(nostack, preserves_flags));
    }
    let p = core::ptr::with_exposed_provenance::<u64>(target as usize);
    // SAFETY: mapped just above to memory this qube does not own; the nested page tables
    // have no entry for it, so the hypervisor stops the qube on this read.
    let value = unsafe { p.read_volatile() };
    info!("testing: read {value:#x} from a window that is not ours");
    Ok(())
}

/// Writes random bytes and wrong sequence words into this qube's own side of channel `local`
/// (the slots of the ring it produces on, and its consumer index of the other ring), then
/// notifies the peer, `rounds` times. It never touches memory outside the channel window.
pub fn scribble_channel(boot: &Boot, local: usize, rounds: u32) -> Result<(), &'static str> {
    use bulkhead_abi::channel::{CONSUMER_OFFSET, Geometry, HEADER_BYTES, RING_CONTROL_SIZE};
    let info = boot.channels().get(local).ok_or("no such channel")?;
    let base = core::ptr::with_exposed_provenance_mut::<u8>(info.gpa as usize);
    let mut header = [0u8; HEADER_BYTES];
    // SAFETY: the window is mapped for `info.size` >= HEADER_BYTES bytes; a byte copy of it
    // is valid whatever the peer writes concurrently.
    unsafe { core::ptr::copy_nonoverlapping(base, header.as_mut_ptr(), HEADER_BYTES) };
    let g = Geometry::from_header(&header, info.size).ok_or("bad header")?;
    let (tx, rx) = if info.side == 0 { (0, 1) } else { (1, 0) };
    let tx_ring = u64::from(g.ring_offset[tx]);
    let rx_ring = u64::from(g.ring_offset[rx]);
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for round in 0..rounds {
        let wrong = (round + 1).wrapping_mul(g.slot_count).wrapping_add(5);
        info!("testing: hostile round {round}: sequence word {wrong} in every slot, random bytes");
        for off in tx_ring + 128..tx_ring + u64::from(g.ring_size) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // SAFETY: `off` < ring offset + ring size <= info.size (Geometry guarantees the
            // rings fit the region), so the byte is inside our mapped window.
            unsafe { base.add(off as usize).write_volatile(seed as u8) };
        }
        for slot in 0..u64::from(g.slot_count) {
            let at = tx_ring + RING_CONTROL_SIZE + slot * u64::from(g.slot_size);
            // SAFETY: slot `slot` < slot_count lies inside the ring, inside the window; its
            // first word is 4-byte aligned (rings are 64-aligned, slots powers of two >= 64).
            unsafe { base.add(at as usize).cast::<u32>().write_volatile(wrong) };
        }
        // SAFETY: the offset is inside the other ring's control block, inside the window,
        // and 4-byte aligned (ring offsets are multiples of 64).
        unsafe {
            base.add((rx_ring + CONSUMER_OFFSET) as usize)
                .cast::<u32>()
                .write_volatile(seed as u32);
        }
        // SAFETY: Notify of a channel this qube has (checked above): a number, no buffer.
        unsafe { bulkhead_rt::hypercall::raw(7, local as u64, 0, 0) };
        bulkhead_rt::sleep(core::time::Duration::from_millis(20));
    }
    Ok(())
}

/// Changes the first byte of the buffer at `offset` of this qube's own pool in channel
/// `local`'s bulk area, after it was lent (a lender may write its own pool; the borrower
/// must notice when it copies the buffer).
pub fn rewrite_own_bulk(boot: &Boot, local: usize, offset: u32) {
    let Some(own) = boot.bulk(local).map(|a| a.own_pool()) else {
        return;
    };
    let at = own.start + u64::from(offset);
    if at >= own.end {
        return;
    }
    let p = core::ptr::with_exposed_provenance_mut::<u8>(at as usize);
    info!("testing: rewriting the buffer at {offset:#x} of our pool after lending it");
    // SAFETY: `at` is inside our own pool of the bulk window (checked above), mapped
    // writable into this qube at the boot info's address (checked by `Boot::new`); no Rust
    // object lives there.
    unsafe { p.write_volatile(p.read_volatile() ^ 0xFF) };
}

/// Reads `*probe` through the GS segment after SWAPGS, which makes the GS base whatever
/// IA32_KERNEL_GS_BASE holds, and swaps back. The hypervisor must leave 0 there for a
/// unikernel (a Linux qube's kernel keeps its per-CPU pointer in it): then the read is of
/// `probe` itself. Any other value either reads some other byte of this qube or, for a
/// Linux kernel address, faults, which this IDT-less qube cannot survive (a triple fault).
pub fn read_through_kernel_gs(probe: &u64) -> u64 {
    let value: u64;
    // SAFETY: SWAPGS only exchanges two segment-base registers, and the second SWAPGS puts
    // them back before any Rust code runs (this image never uses GS). The load reads 8 bytes
    // at GS base + `probe`: with a GS base of 0 that is `probe`, a live, aligned u64; with
    // any other base the read is of other guest memory (never written) or faults.
    unsafe {
        asm!("swapgs", "mov {v}, gs:[{p}]", "swapgs",
             p = in(reg) core::ptr::from_ref(probe), v = out(reg) value,
             options(nostack, readonly, preserves_flags));
    }
    value
}

/// Sets CR4.PKE (bit 22): a unikernel may not change CR4 (protection keys, XSAVE and the rest
/// stay off), so the hypervisor stops the qube.
pub fn set_cr4_pke() {
    // SAFETY: the MOV to CR4 either exits to the hypervisor, which stops the qube, or (a
    // hypervisor that lets it through) enables protection keys, which change nothing until
    // PKRU is written: page accesses of this image are unaffected. Only rax is changed.
    unsafe {
        asm!("mov rax, cr4", "bts rax, 22", "mov cr4, rax", out("rax") _,
             options(nomem, nostack));
    }
}

/// Executes WBINVD (write back and invalidate every cache of the machine).
pub fn wbinvd() {
    // SAFETY: WBINVD writes back and invalidates caches; memory contents stay as they are,
    // so no memory of this program changes. In a qube it stops the qube.
    unsafe { asm!("wbinvd", options(nostack, preserves_flags)) };
}

/// Reads performance counter 0 with RDPMC.
pub fn rdpmc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDPMC reads counter `ecx` = 0 into edx:eax (declared outputs) and touches no
    // memory; in a qube it stops the qube.
    unsafe {
        asm!("rdpmc", in("ecx") 0u32, out("eax") lo, out("edx") hi,
             options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Executes the AMD INVLPGA (invalidate the TLB entry of address rax in ASID ecx) with
/// rax = 0, ecx = 0 (the hypervisor's own ASID). #UD on Intel.
pub fn invlpga() {
    // SAFETY: INVLPGA only drops a TLB entry (the next access walks the page tables again);
    // it writes no memory. In a qube it stops the qube; on Intel it raises #UD, which with no
    // IDT is a triple fault.
    unsafe {
        asm!("invlpga rax, ecx", in("rax") 0u64, in("ecx") 0u32,
             options(nomem, nostack, preserves_flags));
    }
}

/// `bulk-probe channel=NAME [write-peer=1]`: checks the mapping of the channel's bulk area
/// from inside. Writes a marker at both ends of its own pool, then waits (up to 10 s) for
/// the peer's marker at both ends of the peer's pool, which is mapped read-only here. With
/// `write-peer=1` it then makes the peer's pool writable in its own page tables and writes
/// it: the nested page tables map that pool read-only, so the hypervisor must stop the qube.
/// Returns what went wrong, or `Ok` when the markers crossed (and, with `write-peer`, the
/// write was not stopped: the caller reports that).
pub fn bulk_probe(boot: &Boot, channel: &str, write_peer: bool) -> Result<(), &'static str> {
    const MARKER: u64 = 0xB01C_0000_0000_0000;
    let local = boot
        .channels()
        .iter()
        .position(|c| c.name() == channel)
        .ok_or("no channel by that name")?;
    let area = boot.bulk(local).ok_or("the channel has no bulk area")?;
    let (own, peer) = (area.own_pool(), area.peer_pool());
    info!(
        "testing: bulk area {:#x}, {} KiB, side {}: own pool {:#x}..{:#x}, peer's {:#x}..{:#x}",
        area.gpa,
        area.size / 1024,
        if area.side == 0 { "A" } else { "B" },
        own.start,
        own.end,
        peer.start,
        peer.end
    );
    let word = |gpa: u64| core::ptr::with_exposed_provenance_mut::<u64>(gpa as usize);
    let mine = MARKER | u64::from(area.side);
    for at in [own.start, own.end - 8] {
        // SAFETY: `at` is 8-byte aligned inside this qube's own pool, which the hypervisor
        // maps writable at the identity address (the boot info's bulk window, checked by
        // `Boot::new`); no Rust object lives there.
        unsafe { word(at).write_volatile(mine) };
    }
    let theirs = MARKER | u64::from(area.side ^ 1);
    let deadline = bulkhead_rt::now_ns() + 10_000_000_000;
    // SAFETY: both words are 8-byte aligned inside the peer's pool, mapped readable here.
    let seen = || unsafe {
        word(peer.start).read_volatile() == theirs && word(peer.end - 8).read_volatile() == theirs
    };
    while !seen() {
        if bulkhead_rt::now_ns() > deadline {
            return Err("the peer's marker did not appear in its pool within 10 s");
        }
        bulkhead_rt::yield_now();
    }
    info!("testing: bulk: the peer's markers are in its pool; ours are in ours");
    if !write_peer {
        return Ok(());
    }
    let target = peer.start;
    let entry = leaf_entry(boot, target)?;
    info!("testing: bulk: making the peer's pool writable in our own tables, then writing it");
    // SAFETY: (1) `entry` is the leaf entry mapping `target` in this qube's own page tables
    // (inside its memory, identity-mapped, aligned: checked by `leaf_entry`); setting its
    // writable bit changes only how the peer's pool is mapped here, where no Rust object
    // lives; (2) reloading CR3 with its own value only flushes the TLB; (3) the write goes to
    // the peer's pool, which the nested page tables map read-only: the hypervisor stops the
    // qube on it.
    unsafe {
        entry.write_volatile(entry.read_volatile() | WRITABLE);
        asm!("mov {t}, cr3", "mov cr3, {t}", t = out(reg) _, options(nostack, preserves_flags));
        word(target).write_volatile(0xBAD);
    }
    Ok(())
}

/// The leaf entry (a 2 MiB page directory entry or a 4 KiB page table entry) that maps `va`
/// in this qube's own page tables, each table checked to be inside its memory.
fn leaf_entry(boot: &Boot, va: u64) -> Result<*mut u64, &'static str> {
    let mut table = layout::PAGE_TABLES;
    for level in (1..=4u32).rev() {
        if table >= boot.mem_size() {
            return Err("a page table lies outside this qube");
        }
        let index = (va >> (12 + 9 * (level - 1))) & 511;
        let entry = core::ptr::with_exposed_provenance_mut::<u64>((table + index * 8) as usize);
        // SAFETY: the table is inside this qube's memory (checked), identity-mapped and
        // 4 KiB aligned; `index` < 512.
        let e = unsafe { entry.read_volatile() };
        if e & PRESENT == 0 {
            return Err("the address is not mapped in our own tables");
        }
        if level == 1 || (level == 2 && e & PAGE_SIZE != 0) {
            return Ok(entry);
        }
        table = e & ADDR_MASK;
    }
    Err("no leaf entry")
}
