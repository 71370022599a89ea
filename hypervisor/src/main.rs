//! The Bulkhead hypervisor image: boot, then run the qubes the manifest describes.
//!
//! Boot order: serial → descriptor tables → PIC masked → loader information → frame
//! allocator → CPU virtualisation → timer calibration → bundle and manifest → qubes →
//! scheduler. Any failure before the scheduler runs is reported on the console and halts.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use bulkhead_freestanding as _;

// The modules that touch hardware or raw memory: the only ones that may use unsafe code
// (docs/architecture.md lists them; an xtask test keeps the list true).
#[allow(unsafe_code)]
mod arch;
mod channels;
mod console;
mod devices;
mod exits;
mod guest;
mod memory;
mod qube;
mod scheduler;
mod smp;
#[allow(unsafe_code)]
mod sync;
mod time;
mod virt;

use arch::x86::{apic, cpu, descriptors, pic, pit, serial::Serial};
use bulkhead_abi::bundle::Bundle;
use bulkhead_abi::manifest::Manifest;
use bulkhead_hvcore::bootinfo::{self, BootEnv, BootProtocol};
use bulkhead_hvcore::memmap::FrameAllocator;
use bulkhead_hvcore::sched::TIME_SLICE_NS;
use core::fmt::Write;

/// Rust entry, called by `boot/entry.s` in long mode on the boot stack.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
extern "C" fn hv_main(magic: u32, info: u32) -> ! {
    let _ = Serial::init();
    arch::x86::stack::arm();
    // SAFETY: first thing on the boot CPU, interrupts still off (entry.s did `cli`).
    unsafe { descriptors::init() };
    arch::x86::cpu::load_pat();
    pic::mask_all();
    hvlog!("Bulkhead hypervisor {}", env!("CARGO_PKG_VERSION"));

    let env = match bootinfo::parse(&memory::phys::BootMemory, magic, u64::from(info)) {
        Ok(env) => env,
        Err(e) => fail(format_args!(
            "cannot read the boot loader's information: {e:?}"
        )),
    };
    if env.cmdline().split(' ').any(|w| w == "color=off") {
        console::set_color(false);
    }
    let mut frames = match memory::frame_allocator(&env) {
        Ok(frames) => frames,
        Err(r) => fail(format_args!(
            "cannot keep {:#x}-{:#x} (image, bundle or loader data) out of the frame allocator: \
             the firmware's memory map has too many ranges",
            r.start, r.end
        )),
    };
    report_boot(&env, &frames);
    match memory::host_tables::load(&env, &mut frames) {
        Ok(t) => hvlog!(
            "memory: own page tables ({} pages): RAM to {:#x} mapped ({} MiB above 4 GiB), code read-only, nothing else executable",
            t.pages,
            t.top,
            t.above_4g >> 20
        ),
        Err(why) => fail(format_args!(
            "cannot build the hypervisor's page tables: {why}"
        )),
    }

    let vendor = virt::vendor();
    let vendor = core::str::from_utf8(&vendor).unwrap_or("?");
    hvlog!("cpu: {vendor} {}", cpu_brand().trim());
    let backend = match virt::Backend::start(&mut frames) {
        Ok(b) => b,
        Err(e) => fail(format_args!("no usable virtualisation: {e}")),
    };
    report_xstate(virt::xstate::enable());

    let lapic = apic::LocalApic::init();
    let (tsc_khz, apic_per_ms) = calibrate(&lapic);
    hvlog!(
        "timer: TSC {} MHz, APIC timer {} kHz (/16), time slice {} ms",
        tsc_khz / 1000,
        apic_per_ms,
        TIME_SLICE_NS / 1_000_000
    );
    report_wall_clock();

    let mut platform = devices::discover(&env, &mut frames);
    let online = start_cpus(&env, &platform, &backend, &mut frames, apic_per_ms);
    load_system(&env, &backend, &mut frames, &mut platform, online);
    // The IOMMU moves to frames of its own, so that the boot CPU's run queue (a static that
    // is all zero at first) holds only a reference.
    let iommu = platform.iommu.take().and_then(|iommu| {
        let size = (core::mem::size_of::<devices::vtd::Iommu>() as u64).next_multiple_of(4096);
        let home = frames.alloc(size, 4096);
        if home.is_none() {
            hvlog!("iommu: no memory to keep its state; its faults will not be reported");
        }
        home.map(|f| memory::phys::leak_init(f, iommu))
    });
    let _ = smp::RUN_QUEUES[0].with(|s| s.set_iommu(iommu));
    hvlog!("{} KiB of RAM left free", frames.free_bytes() / 1024);
    lapic.start_oneshot(apic_per_ms);
    console::start_queueing();
    smp::start::release();
    smp::start::run(0)
}

/// Starts the other CPUs the MADT lists (with SVM); returns how many CPUs run qubes.
fn start_cpus(
    env: &BootEnv,
    platform: &devices::Platform,
    backend: &virt::Backend,
    frames: &mut FrameAllocator,
    apic_per_ms: u64,
) -> usize {
    let Some(madt) = &platform.madt else {
        hvlog!("smp: no MADT; running on the boot CPU only");
        return smp::start::start_aps(env, &[], backend, frames, apic_per_ms);
    };
    // Simultaneous multithreading off unless the command line says `smt=on`: two qubes on
    // the two threads of one core would share its L1 cache and buffers (as Qubes: smt=off).
    let smt_on = env.cmdline().split(' ').any(|w| w == "smt=on");
    let (ids, siblings) = madt.without_smt_siblings(if smt_on { 0 } else { smt_bits() });
    let online = smp::start::start_aps(env, &ids, backend, frames, apic_per_ms);
    let skipped = madt.skipped as usize + madt.cpus.len().saturating_sub(smp::MAX_CPUS);
    let apic_ids = (0..online).map(|c| {
        smp::CPUS[c]
            .apic_id
            .load(core::sync::atomic::Ordering::Relaxed)
    });
    let mut list = bulkhead_hvcore::collections::BoundedString::<96>::new();
    for (i, id) in apic_ids.enumerate() {
        let _ = core::fmt::write(
            &mut list,
            format_args!("{}{id}", if i == 0 { "" } else { " " }),
        );
    }
    hvlog!(
        "smp: {online} of {} CPUs online (APIC IDs {}){}",
        madt.cpus.len() + madt.skipped as usize,
        list.as_str(),
        if skipped > 0 {
            "; the others stay halted"
        } else {
            ""
        }
    );
    if siblings > 0 {
        hvlog!(
            "smp: {siblings} SMT sibling threads left halted (simultaneous multithreading off; `smt=on` on the command line starts them)"
        );
    }
    online
}

/// The APIC ID bits that number the threads of a core (CPUID leaf 0xB, level 0 when it is
/// the SMT level), 0 when the CPU does not say or has one thread per core.
fn smt_bits() -> u32 {
    if cpu::cpuid(0, 0).eax < 0xB {
        return 0;
    }
    let level = cpu::cpuid(0xB, 0);
    let is_smt = (level.ecx >> 8) & 0xFF == 1;
    if level.ebx == 0 || !is_smt {
        return 0;
    }
    level.eax & 0x1F
}

fn report_boot(env: &BootEnv, frames: &FrameAllocator) {
    let proto = match env.protocol {
        BootProtocol::Pvh => "PVH",
        BootProtocol::Multiboot2 => "multiboot2",
    };
    let img = memory::image_region();
    hvlog!(
        "boot: {proto}, RAM {} MiB in {} ranges, image {:#x}-{:#x}, {} MiB free for qubes",
        env.ram.total() >> 20,
        env.ram.regions().len(),
        img.start,
        img.end,
        frames.free_bytes() >> 20
    );
    if let Some(fb) = env.framebuffer {
        hvlog!(
            "boot: framebuffer {}x{} at {:#x}, pitch {}",
            fb.width,
            fb.height,
            fb.addr,
            fb.pitch
        );
    } else if let Some(why) = env.framebuffer_ignored {
        hvlog!("boot: framebuffer ignored: {why}");
    }
}

/// The firmware's framebuffer for qube `spec` if it asks for it and the loader left one
/// that overlaps neither RAM, the hypervisor, the qube's own ranges (`reserved`) nor its
/// devices' BAR pieces (with QEMU's std VGA, the framebuffer is its BAR0).
fn framebuffer_for(
    env: &BootEnv,
    spec: &bulkhead_abi::manifest::QubeSpec,
    reserved: &[bulkhead_hvcore::memmap::Region],
    devices: &guest::Devices,
) -> Option<bulkhead_hvcore::bootinfo::Framebuffer> {
    use bulkhead_hvcore::memmap::Region;
    let name = spec.name.as_str();
    let fb = env.framebuffer.filter(|_| spec.framebuffer)?;
    let pieces = devices.iter().flat_map(|d| d.pieces.iter());
    let pieces = pieces.filter_map(|p| Region::from_len(p.start, p.len));
    let image = core::iter::once(memory::phys::image_region());
    match fb.mappable(
        &env.ram,
        image.chain(reserved.iter().copied()).chain(pieces),
    ) {
        Ok(pages) => {
            hvlog!(
                "qube {name}: framebuffer {}x{} mapped at {:#x}-{:#x} (write-combining)",
                fb.width,
                fb.height,
                pages.start,
                pages.end
            );
            Some(fb)
        }
        Err(why) => {
            hvlog!(
                "qube {name}: framebuffer at {:#x} not mapped: {why}",
                fb.addr
            );
            None
        }
    }
}

/// Logs which extended-state components every world switch moves.
fn report_xstate(x: virt::xstate::XStateCaps) {
    use bulkhead_platform::xsave;
    if x.xcr0 == 0 {
        hvlog!("xstate: no XSAVE; x87/SSE switched per vCPU with FXSAVE");
    } else {
        let names = [
            (xsave::X87, " x87"),
            (xsave::SSE, " SSE"),
            (xsave::AVX, " AVX"),
            (xsave::AVX512, " AVX-512"),
            (xsave::PKRU, " PKRU"),
        ];
        let mut list = bulkhead_hvcore::collections::BoundedString::<40>::new();
        for (bit, name) in names {
            if x.xcr0 & bit == bit {
                let _ = list.push_str(name);
            }
        }
        hvlog!(
            "xstate: XCR0 {:#x} ({}) switched per vCPU with XSAVE, {}-byte areas",
            x.xcr0,
            list.trim_start(),
            x.area_size
        );
    }
    if x.pkru_unswitched {
        hvlog!("xstate: WARNING: PKU without XSAVE-managed PKRU: a Linux qube could share PKRU");
    }
}

/// Reads the machine's RTC for the wall-clock time Linux qubes' clocks show.
fn report_wall_clock() {
    match arch::x86::cmos::wall_clock() {
        Some(secs) => {
            time::set_wall_clock(secs);
            let t = bulkhead_platform::rtc::civil::DateTime::from_unix(secs);
            hvlog!(
                "clock: RTC {}-{:02}-{:02} {:02}:{:02}:{:02} (taken as UTC)",
                t.year,
                t.month,
                t.day,
                t.hour,
                t.minute,
                t.second
            );
        }
        None => hvlog!("clock: no readable RTC; Linux qubes' clocks start at 1970-01-01"),
    }
}

/// Measures the TSC and the APIC timer against 10 ms of the PIT.
fn calibrate(lapic: &apic::LocalApic) -> (u64, u64) {
    let mut tsc0 = 0;
    let mut tsc1 = 0;
    let ok = pit::measure(
        10,
        || {
            lapic.start_calibration();
            tsc0 = cpu::rdtsc();
        },
        || tsc1 = cpu::rdtsc(),
    );
    let apic_ticks = u64::from(lapic.calibration_elapsed());
    if !ok || tsc1 <= tsc0 {
        hvlog!("timer: no PIT, assuming a 1 GHz TSC and a 100 MHz APIC timer");
        time::init(1_000_000, cpu::rdtsc());
        return (1_000_000, 6250);
    }
    let tsc_khz = (tsc1 - tsc0) / 10;
    time::init(tsc_khz, tsc0);
    (tsc_khz, (apic_ticks / 10).max(1))
}

/// Reads the bundle and manifest and creates every qube.
fn load_system(
    env: &BootEnv,
    backend: &virt::Backend,
    frames: &mut FrameAllocator,
    platform: &mut devices::Platform,
    online: usize,
) {
    let Some(region) = env.bundle else {
        fail(format_args!(
            "no boot bundle: pass it as the initrd (QEMU) or module2 (GRUB)"
        ))
    };
    // SAFETY: the loader's module region, removed from the frame allocator.
    #[allow(unsafe_code)]
    let bytes = unsafe { memory::phys::bundle_bytes(region) };
    let bundle = match Bundle::parse(bytes) {
        Ok(b) => b,
        Err(e) => fail(format_args!("boot bundle refused: {e}")),
    };
    let manifest = match Manifest::decode(bundle.manifest()) {
        Ok(m) => m,
        Err(e) => fail(format_args!("manifest refused: {e}")),
    };
    if let Err(e) = bulkhead_hvcore::ioports::check(&manifest) {
        fail(format_args!("manifest refused: {e}"));
    }
    hvlog!(
        "system {}: {} qubes, bundle {} KiB at {:#x}",
        manifest.system.as_str(),
        manifest.qubes.len(),
        region.len() / 1024,
        region.start
    );
    let (regions, mut endpoints) = channels::create(&manifest, frames);
    scheduler::set_channels(regions);
    let placement = place_qubes(&manifest, online);
    console::set_name_width(
        manifest
            .qubes
            .iter()
            .map(|q| q.name.len())
            .max()
            .unwrap_or(2),
    );
    for (id, spec) in manifest.qubes.iter().enumerate() {
        let config = match spec.config.map(|i| bundle.entry(usize::from(i))) {
            None => &[][..],
            Some(Some(e)) if e.kind == bulkhead_abi::bundle::EntryKind::Config => e.data,
            Some(_) => {
                hvlog!(
                    "qube {} not started: its configuration entry is missing from the bundle",
                    spec.name.as_str()
                );
                continue;
            }
        };
        let guest = match guest_of(&bundle, spec, config, backend, (id, &endpoints[id]), frames) {
            Ok(guest) => guest,
            Err(why) => {
                hvlog!("qube {} not started: {why}", spec.name.as_str());
                continue;
            }
        };
        let image_len = guest.image().len();
        let reserved = [
            bulkhead_hvcore::memmap::Region {
                start: 0,
                end: u64::from(spec.memory_mib) << 20,
            },
            channels::Endpoint::windows(),
            channels::Endpoint::bulk_windows(),
        ];
        let mut devices = devices::assign::for_qube(platform, &manifest, id, &env.ram, &reserved);
        let cpu = placement.get(id).map_or(0, |p| usize::from(p.cpu));
        if let Some(iommu) = platform.iommu.as_mut() {
            for (index, d) in devices.iter_mut().enumerate() {
                d.route_interrupts(iommu, id, cpu, index, spec.name.as_str());
            }
        }
        let framebuffer = framebuffer_for(env, spec, &reserved, &devices);
        let parts = qube::Parts {
            framebuffer,
            guest,
            channels: core::mem::take(&mut endpoints[id]),
            devices,
            ports: bulkhead_hvcore::ioports::of_qube(&manifest, id),
        };
        match qube::Qube::create(
            id,
            spec.clone(),
            parts,
            backend,
            platform.iommu.as_mut(),
            frames,
        ) {
            Ok(q) => {
                let host = q.machine.mem.host();
                hvlog!(
                    "qube {}: {} MiB at {:#x}-{:#x}, image {} ({} KiB), label {}, restart {}",
                    spec.name.as_str(),
                    spec.memory_mib,
                    host.start,
                    host.end,
                    bundle
                        .entry(usize::from(spec.image))
                        .map(|e| e.name)
                        .unwrap_or("?"),
                    image_len / 1024,
                    spec.label.name(),
                    spec.restart.name()
                );
                let aps = q
                    .linux_board()
                    .map(|b| (b, q.nested_root(), q.machine.mem.view()));
                place(q, cpu, backend, frames);
                if let Some((board, root, mem)) = aps {
                    board.links[0].set_cpu(cpu);
                    for k in 1..board.vcpus {
                        let ap_cpu = ap_cpu_of(spec.cpus, cpu, k, online);
                        place_ap(board, k, root, mem, ap_cpu, backend, frames);
                    }
                }
            }
            Err(e) => hvlog!("qube {} not started: {e}", spec.name.as_str()),
        }
    }
}

/// Where each qube of `manifest` runs (`bulkhead_hvcore::sched::place`: pins first, then
/// the heaviest on the least loaded CPU; a Linux qube weighs 4, a unikernel 1), logged
/// when there is more than one CPU.
fn place_qubes(
    manifest: &Manifest,
    online: usize,
) -> bulkhead_hvcore::collections::ArrayVec<
    bulkhead_hvcore::sched::Placement,
    { scheduler::MAX_QUBES },
> {
    use bulkhead_hvcore::sched::{PlaceRequest, place};
    let requests = bulkhead_hvcore::collections::ArrayVec::<PlaceRequest, { scheduler::MAX_QUBES }>::try_from_iter(
        manifest.qubes.iter().map(PlaceRequest::of),
    )
    .unwrap_or_default();
    let placement = place(&requests, online);
    for (q, p) in manifest.qubes.iter().zip(placement.iter()) {
        if p.pin_unmet {
            hvlog!(
                "smp: qube {} is pinned to CPUs {:#x}, which this machine does not have; it runs on CPU {}",
                q.name.as_str(),
                q.cpus,
                p.cpu
            );
        }
    }
    if online > 1 {
        let mut line = bulkhead_hvcore::collections::BoundedString::<200>::new();
        for (q, p) in manifest.qubes.iter().zip(placement.iter()) {
            let _ = core::fmt::write(&mut line, format_args!(" {}:{}", q.name.as_str(), p.cpu));
        }
        hvlog!("smp: qubes placed (name:CPU){}", line.as_str());
    }
    placement
}

/// Puts qube `q` in CPU `cpu`'s run queue, its vCPU bound to that CPU, and publishes what
/// the other CPUs may read of it.
fn place(q: qube::Qube, cpu: usize, backend: &virt::Backend, frames: &mut FrameAllocator) {
    use core::sync::atomic::Ordering;
    let size = core::mem::size_of::<qube::Qube>() as u64;
    let Some(home) = frames.alloc(size.next_multiple_of(4096), 4096) else {
        hvlog!("qube {} not started: no memory for its state", q.name());
        return;
    };
    let q = memory::phys::leak_init(home, q);
    let id = q.id();
    q.machine
        .vcpu
        .bind_cpu(cpu, smp::start::host_state_page(cpu, backend));
    let info = smp::QubeInfo {
        name: q.spec().name,
        at_boot: q.spec().start == bulkhead_abi::manifest::StartPolicy::AtBoot,
        devices: bulkhead_hvcore::collections::ArrayVec::try_from_iter(
            q.machine.devices.iter().map(|d| d.func.source_id()),
        )
        .unwrap_or_default(),
    };
    let Some(slot) = smp::QUBES.get(id) else {
        return;
    };
    let _ = slot.info.with(|i| *i = Some(info));
    slot.cpu.store(cpu, Ordering::Relaxed);
    // Its status before its CPU first publishes it (a CPU whose qubes are all stopped must
    // not take this one for stopped too).
    if q.state != bulkhead_hvcore::sched::RunState::Stopped {
        slot.status.store(smp::status::RUNNING, Ordering::Release);
    }
    // Capacity equals MAX_QUBES, which the manifest cannot exceed.
    if smp::RUN_QUEUES[cpu].with(|s| s.add(q)) == Some(true) {
        slot.placed.store(true, Ordering::Release);
    }
}

/// The CPU secondary vCPU `k` of a qube on CPU `first` runs on: the `k`-th CPU after
/// `first` among those it is pinned to (`pins`, a mask; 0: any), of the `online` CPUs.
fn ap_cpu_of(pins: u32, first: usize, k: u8, online: usize) -> usize {
    let allowed = |c: usize| c < online && (pins == 0 || pins & (1 << c) != 0);
    let mut cpu = first;
    for _ in 0..k {
        cpu = (1..=online)
            .map(|d| (cpu + d) % online.max(1))
            .find(|&c| allowed(c))
            .unwrap_or(first);
    }
    cpu
}

/// Creates secondary vCPU `k` of the Linux qube whose vCPUs share `board` (on its nested
/// page tables `root`, reading its memory through `mem`) and puts it in CPU `cpu`'s run
/// queue, parked until the guest starts it.
fn place_ap(
    board: &'static guest::linux::Board,
    k: u8,
    root: u64,
    mem: memory::guest::MemView,
    cpu: usize,
    backend: &virt::Backend,
    frames: &mut FrameAllocator,
) {
    let id = (scheduler::MAX_QUBES + usize::from(k) * scheduler::MAX_QUBES + board.qube) as u32;
    let Some(mut vcpu) = backend.create_vcpu(frames, id, root, true, &[]) else {
        hvlog!("qube {}: vCPU {k} not created: no memory", board.name);
        return;
    };
    vcpu.bind_cpu(cpu, smp::start::host_state_page(cpu, backend));
    let ap = guest::LinuxAp::new(board, k, vcpu, mem, cpu);
    let size = core::mem::size_of::<guest::LinuxAp>() as u64;
    let Some(home) = frames.alloc(size.next_multiple_of(4096), 4096) else {
        hvlog!("qube {}: vCPU {k} not created: no memory", board.name);
        return;
    };
    let ap = memory::phys::leak_init(home, ap);
    if smp::RUN_QUEUES[cpu].with(|s| s.add_ap(ap)) == Some(true) {
        hvlog!(
            "qube {}: vCPU {k} of {} placed on CPU {cpu}",
            board.name,
            board.vcpus
        );
    } else {
        hvlog!(
            "qube {}: vCPU {k} not placed: CPU {cpu}'s table is full",
            board.name
        );
    }
}

/// The guest a qube boots, from its bundle entries: a unikernel's ELF (with its
/// configuration blob), or a bzImage with the initramfs and the command line on a board
/// of its own (for qube `id` with `channels`).
fn guest_of(
    bundle: &bulkhead_abi::bundle::Bundle<'static>,
    spec: &bulkhead_abi::manifest::QubeSpec,
    config: &'static [u8],
    backend: &virt::Backend,
    (id, channels): (usize, &channels::Endpoints),
    frames: &mut FrameAllocator,
) -> Result<guest::GuestKind, &'static str> {
    use bulkhead_abi::bundle::EntryKind;
    use bulkhead_abi::manifest::QubeKind;
    use guest::{GuestKind, Linux, LinuxImage, Unikernel};
    let entry = |index: u16, kind: EntryKind| match bundle.entry(usize::from(index)) {
        Some(e) if e.kind == kind => Some(e.data),
        _ => None,
    };
    match spec.kind {
        QubeKind::Unikernel => entry(spec.image, EntryKind::Image)
            .map(|image| GuestKind::Unikernel(Unikernel::new(image, config, backend.boot_flags())))
            .ok_or("its image is missing from the bundle"),
        QubeKind::Linux { initrd, cmdline } => {
            let kernel = entry(spec.image, EntryKind::LinuxKernel)
                .ok_or("its kernel is missing from the bundle")?;
            let initrd = entry(initrd, EntryKind::Initrd)
                .ok_or("its initramfs is missing from the bundle")?;
            let cmdline = entry(cmdline, EntryKind::Cmdline)
                .ok_or("its command line is missing from the bundle")?;
            if spec.vcpus > 1 && !backend.starts_real_mode() {
                return Err(
                    "it has several vCPUs, which start in real mode: that needs SVM here (the VMX backend has no unrestricted-guest mode)",
                );
            }
            let board = guest::linux::Board::new(id, spec, channels);
            let size = core::mem::size_of::<guest::linux::Board>() as u64;
            let home = frames
                .alloc(size.next_multiple_of(4096), 4096)
                .ok_or("no memory for its devices")?;
            let board = memory::phys::leak_init(home, board);
            Ok(GuestKind::Linux(Linux::new(
                LinuxImage {
                    kernel,
                    initrd,
                    cmdline,
                },
                board,
            )))
        }
    }
}

/// The CPU's brand string (CPUID 0x8000_0002..4), empty if it has none.
fn cpu_brand() -> bulkhead_hvcore::collections::BoundedString<48> {
    let mut brand = bulkhead_hvcore::collections::BoundedString::new();
    if cpu::cpuid(0x8000_0000, 0).eax >= 0x8000_0004 {
        for leaf in 0x8000_0002..=0x8000_0004 {
            let r = cpu::cpuid(leaf, 0);
            for reg in [r.eax, r.ebx, r.ecx, r.edx] {
                for b in reg.to_le_bytes() {
                    if b != 0 {
                        let _ = brand.push(char::from(b));
                    }
                }
            }
        }
    }
    brand
}

/// Reports a boot failure and halts.
fn fail(args: core::fmt::Arguments<'_>) -> ! {
    hvlog!("panic: {args}");
    hvlog!("halting");
    console::flush_waiting();
    cpu::halt_forever()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    // What was written before the panic comes first.
    console::flush_waiting();
    let mut s = Serial::raw();
    let _ = writeln!(s, "hv | panic: {}", info.message());
    if let Some(l) = info.location() {
        let _ = writeln!(s, "hv | panic location: {}:{}", l.file(), l.line());
    }
    let _ = writeln!(s, "hv | halting");
    cpu::halt_forever()
}
