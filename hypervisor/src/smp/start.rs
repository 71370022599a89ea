//! Bringing up the other CPUs: which there are (the ACPI MADT, read by `devices::discover`),
//! their stacks and SVM pages or VMXON region (from the frame allocator, before any qube
//! takes memory),
//! INIT-SIPI-SIPI one at a time, and each AP's own setup (descriptor tables, PAT, extended
//! state, local APIC, SVM or VMX) before it waits for the boot CPU to finish loading qubes and then
//! runs its run queue.

use super::{CPUS, MAX_CPUS, RUN_QUEUES};
use crate::arch::x86::{apic, cpu, descriptors, smp as ap, stack};
use crate::hvlog;
use crate::virt::Backend;
use bulkhead_hvcore::bootinfo::BootEnv;
use bulkhead_hvcore::memmap::{FrameAllocator, Region};
use bulkhead_hvcore::sched::TIME_SLICE_NS;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Each AP's stack (the boot CPU's is 512 KiB, but most of that is `hv_main`'s).
const AP_STACK_BYTES: u64 = 256 * 1024;

/// CR0.CD and CR0.NW: caching disabled (as INIT leaves an AP; the trampoline clears them).
const CR0_CACHE_OFF: u64 = (1 << 30) | (1 << 29);

/// What the boot CPU prepared for one AP.
struct ApSlot {
    /// Lowest address of its IST stacks.
    ist: AtomicU64,
    /// Its SVM host save area and host state page (0 under VMX).
    hsave: AtomicU64,
    host_state: AtomicU64,
    /// Its VMXON region (0 under SVM).
    vmxon: AtomicU64,
    /// Its CR0 in `ap_run` (the boot CPU checks that caching is on).
    cr0: AtomicU64,
    /// It reached `ap_run`.
    alive: AtomicBool,
}

static AP_SLOTS: [ApSlot; MAX_CPUS] = [const {
    ApSlot {
        ist: AtomicU64::new(0),
        hsave: AtomicU64::new(0),
        host_state: AtomicU64::new(0),
        vmxon: AtomicU64::new(0),
        cr0: AtomicU64::new(0),
        alive: AtomicBool::new(false),
    }
}; MAX_CPUS];

/// The boot CPU's VMX capabilities, for the APs' VMXON (set before they start).
static VMX_CAPS: crate::sync::Locked<Option<crate::virt::vmx::VmxCaps>> =
    crate::sync::Locked::new(None);

/// Set by the boot CPU when every qube is placed: the APs may run their queues.
static GO: AtomicBool = AtomicBool::new(false);
/// APIC timer counts per millisecond (measured on the boot CPU; every CPU's timer has the
/// same clock).
static APIC_PER_MS: AtomicU64 = AtomicU64::new(0);

/// Where AP `cpu`'s IST stacks are (read by `ap_main`).
pub fn ist_base(cpu: usize) -> u64 {
    AP_SLOTS
        .get(cpu)
        .map_or(0, |s| s.ist.load(Ordering::Acquire))
}

/// Host-state page of CPU `cpu` under SVM (the vCPUs placed there use it), 0 if none.
pub fn host_state_page(cpu: usize, backend: &Backend) -> u64 {
    match (cpu, backend) {
        (0, Backend::Svm(s)) => s.boot_cpu_pages().host_state,
        (_, Backend::Svm(_)) => AP_SLOTS
            .get(cpu)
            .map_or(0, |s| s.host_state.load(Ordering::Acquire)),
        (_, Backend::Vmx(_)) => 0,
    }
}

/// Starts the CPUs `apic_ids` lists (the boot CPU's own ID is skipped), numbering them 1, 2,
/// ... in that order; logs each one that does not come up and the total. Returns how many
/// CPUs are online, the boot CPU included.
pub fn start_aps(
    env: &BootEnv,
    apic_ids: &[u32],
    backend: &Backend,
    frames: &mut FrameAllocator,
    apic_per_ms: u64,
) -> usize {
    let me = apic::id();
    CPUS[0].apic_id.store(me, Ordering::Relaxed);
    CPUS[0].online.store(true, Ordering::Release);
    APIC_PER_MS.store(apic_per_ms, Ordering::Relaxed);
    let others = apic_ids.iter().copied().filter(|&id| id != me);
    let wanted = others.clone().count();
    if wanted == 0 {
        return 1;
    }
    if let Backend::Vmx(v) = backend {
        let _ = VMX_CAPS.with(|c| *c = Some(v.caps));
    }
    if let Err(why) = trampoline_page_free(env) {
        hvlog!(
            "smp: {} CPUs listed, but {why}; running on the boot CPU only",
            wanted + 1
        );
        return 1;
    }
    ap::install_trampoline();
    let mut online = 1;
    for id in others {
        if online == MAX_CPUS {
            hvlog!("smp: CPUs beyond {MAX_CPUS} left halted");
            break;
        }
        let cpu = online;
        let Some(stack_bottom) = prepare(cpu, backend, frames) else {
            hvlog!("smp: out of memory for CPU {cpu}'s stacks; the rest stay halted");
            break;
        };
        let slot = &AP_SLOTS[cpu];
        let top = stack_bottom + AP_STACK_BYTES;
        stack::arm_ap(cpu, stack_bottom);
        if !ap::start_ap(id, cpu as u32, top, || slot.alive.load(Ordering::Acquire)) {
            // It may still wake later and use this number's stacks: give both up.
            hvlog!("smp: CPU with APIC ID {id} did not start; the rest stay halted");
            break;
        }
        let cr0 = slot.cr0.load(Ordering::Relaxed);
        if cr0 & CR0_CACHE_OFF != 0 {
            hvlog!("smp: CPU {cpu} runs with caching disabled (CR0 {cr0:#x})");
        }
        CPUS[cpu].apic_id.store(id, Ordering::Relaxed);
        CPUS[cpu].online.store(true, Ordering::Release);
        online += 1;
    }
    online
}

/// Whether the trampoline's page is RAM that neither the loader's structures nor the bundle
/// use (below 1 MiB the frame allocator hands out nothing).
fn trampoline_page_free(env: &BootEnv) -> Result<(), &'static str> {
    let page = Region {
        start: ap::TRAMPOLINE_BASE,
        end: ap::TRAMPOLINE_BASE + 4096,
    };
    if ap::trampoline_len() > 4096 {
        return Err("the AP trampoline is longer than a page");
    }
    if !env
        .ram
        .regions()
        .iter()
        .any(|r| r.start <= page.start && page.end <= r.end)
    {
        return Err("the AP trampoline's page (0x8000) is not RAM");
    }
    let overlaps = |r: &Region| r.start < page.end && page.start < r.end;
    if overlaps(&env.info) || env.bundle.as_ref().is_some_and(overlaps) {
        return Err("the boot loader's data use the AP trampoline's page (0x8000)");
    }
    Ok(())
}

/// Allocates AP `cpu`'s stack, IST stacks and SVM pages; returns the stack's bottom.
fn prepare(cpu: usize, backend: &Backend, frames: &mut FrameAllocator) -> Option<u64> {
    let slot = &AP_SLOTS[cpu];
    let stack = frames.alloc(AP_STACK_BYTES, 4096)?;
    let ist = frames.alloc(descriptors::IST_BYTES, 4096)?;
    match backend {
        Backend::Svm(_) => {
            let pages = crate::virt::svm::Svm::pages_for_cpu(frames).ok()?;
            slot.hsave.store(pages.hsave, Ordering::Relaxed);
            slot.host_state.store(pages.host_state, Ordering::Relaxed);
        }
        Backend::Vmx(v) => {
            let region = crate::virt::vmx::Vmx::region_for_cpu(&v.caps, frames).ok()?;
            slot.vmxon.store(region.start(), Ordering::Relaxed);
            // Kept for the rest of the run.
            core::mem::forget(region);
        }
    }
    slot.ist.store(ist.start(), Ordering::Release);
    // The frames stay the AP's for the rest of the run (never given back).
    Some(stack.start())
}

/// Lets the APs run their queues (every qube is placed).
pub fn release() {
    GO.store(true, Ordering::Release);
}

/// The rest of AP `cpu`'s start, on its own stack with its own descriptor tables: the
/// per-CPU state the boot CPU set up for itself in `hv_main`, then its run queue.
pub fn ap_run(cpu: usize) -> ! {
    cpu::load_pat();
    let _ = crate::virt::xstate::enable();
    let lapic = apic::LocalApic::init();
    let slot = &AP_SLOTS[cpu];
    let hsave = slot.hsave.load(Ordering::Acquire);
    if hsave != 0 {
        crate::virt::svm::enable_on_this_cpu(crate::virt::svm::CpuPages {
            hsave,
            host_state: slot.host_state.load(Ordering::Acquire),
        });
    }
    let vmxon = slot.vmxon.load(Ordering::Acquire);
    let caps = VMX_CAPS.with_spin(|c| *c).flatten();
    if let (true, Some(caps)) = (vmxon != 0, caps) {
        if let Err(e) = crate::virt::vmx::enable_on_this_cpu(&caps, vmxon) {
            // Said now, while the boot CPU waits for this one; it then stays out.
            hvlog!("smp: CPU {cpu}: VMX cannot be enabled: {e}; halting it");
            cpu::halt_forever();
        }
    }
    slot.cr0.store(cpu::cr0(), Ordering::Relaxed);
    slot.alive.store(true, Ordering::Release);
    while !GO.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    lapic.start_oneshot(APIC_PER_MS.load(Ordering::Relaxed));
    run(cpu)
}

/// Runs CPU `cpu`'s queue forever (the boot CPU's too, from `hv_main`).
pub fn run(cpu: usize) -> ! {
    apic::arm_in(TIME_SLICE_NS);
    cpu::enable_interrupts();
    let _ = RUN_QUEUES[cpu].with(|s| s.run(cpu));
    // Only if the queue was taken already, which no CPU does twice.
    hvlog!("smp: CPU {cpu} found its run queue taken; halting it");
    cpu::halt_forever()
}
