//! A qube: its memory, nested page tables, vCPU, run state, console and restart count, and
//! how it is (re)loaded from its image.

use crate::channels::{Endpoint, Endpoints};
use crate::devices::assign::Assigned;
use crate::devices::vtd::{Iommu, VtdError};
use crate::memory::guest::GuestMemory;
use crate::memory::phys;
use crate::virt::{AnyVcpu, Backend, EntryState, Vcpu};
use bulkhead_abi::boot_info::{BootInfo, MAX_DEVICES_PER_QUBE};
use bulkhead_abi::channel::MAX_CHANNELS_PER_QUBE;
use bulkhead_abi::manifest::{QubeSpec, StartPolicy};
use bulkhead_hvcore::collections::ArrayVec;
use bulkhead_hvcore::console::LineBuffer;
use bulkhead_hvcore::memmap::{FrameAllocator, Frames, Region};
use bulkhead_hvcore::paging::{NestedFormat, PagingError, Perm, Tables};
use bulkhead_hvcore::sched::RunState;
use bulkhead_hvcore::unikernel::{self, PlanError, UnikernelPlan};
use bulkhead_hvcore::{LARGE_PAGE_SIZE, PAGE_SIZE};

/// Pages reserved for a qube's nested page tables: PML4, PDPT, up to 4 PDs for 4 GiB of
/// memory, and for the channel windows one PD plus one page table per channel.
const NPT_ARENA_PAGES: u64 = 6 + 1 + bulkhead_abi::channel::MAX_CHANNELS_PER_QUBE as u64;
/// Extra nested-table pages per assigned device: a PDPT and a PD for where its BARs are, and
/// a page table per mapped piece.
const NPT_PAGES_PER_DEVICE: u64 = 2 + crate::devices::assign::MAX_PIECES as u64;

/// The devices a qube owns.
pub type Devices = bulkhead_hvcore::collections::BoundedVec<Assigned, MAX_DEVICES_PER_QUBE>;

/// Why a qube could not be created or loaded.
#[derive(Clone, Copy, Debug)]
pub enum LoadError {
    /// Not enough free RAM for the qube.
    NoMemory(u64),
    /// The unikernel's image, configuration, channels or devices do not fit its memory.
    Layout(PlanError),
    /// Page tables could not be built.
    Paging(PagingError),
    /// The IOMMU domain for its devices could not be set up.
    Iommu(VtdError),
    /// The Linux kernel, initramfs or command line cannot be booted.
    Linux(bulkhead_platform::boot::LinuxError),
    /// The ACPI tables did not fit.
    Acpi,
    /// Something this hypervisor cannot do (the reason).
    Unsupported(&'static str),
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::NoMemory(b) => write!(f, "not enough free memory ({} KiB needed)", b / 1024),
            LoadError::Layout(e) => write!(f, "{e}"),
            LoadError::Paging(e) => write!(f, "page tables: {e:?}"),
            LoadError::Iommu(e) => write!(f, "IOMMU domain: {e}"),
            LoadError::Linux(e) => write!(f, "Linux boot: {e}"),
            LoadError::Acpi => write!(f, "the ACPI tables do not fit"),
            LoadError::Unsupported(why) => write!(f, "{why}"),
        }
    }
}

/// One qube.
pub struct Qube {
    /// Index in the manifest.
    pub id: usize,
    /// What the system description says about it.
    pub spec: QubeSpec,
    image: &'static [u8],
    /// Its RAM.
    pub mem: GuestMemory,
    /// The pages of its nested page tables and (with assigned devices behind an IOMMU) of
    /// its DMA remapping tables: the hardware reads them for the rest of the run.
    _tables: (Frames, Option<Frames>),
    /// Its virtual CPU.
    pub vcpu: AnyVcpu,
    /// Run state.
    pub state: RunState,
    /// How often it was restarted.
    pub restarts: u32,
    /// Partial console line.
    pub console: LineBuffer,
    /// Pending event bits: bit `i` = local channel `i` was notified by its peer.
    pub events: u64,
    /// Blocked in `wait_event`: when woken, `rax` gets the events.
    pub in_wait_event: bool,
    /// The channels it is an endpoint of (position = local index = event bit).
    pub channels: Endpoints,
    /// Said `ready` since its last start.
    pub ready: bool,
    /// `BootInfo::flags` from the backend (hypercall instruction).
    boot_flags: u32,
    /// The PCI devices it owns (position = device index of the `pci_config_*` calls).
    pub devices: Devices,
    /// Its configuration blob from the bundle (empty if none).
    config: &'static [u8],
    /// The virtual machine of a Linux qube (`None` for a unikernel).
    pub linux: Option<crate::linux::LinuxGuest>,
}

/// What a qube is made of, besides its manifest entry.
pub struct Parts {
    /// Its ELF image.
    pub image: &'static [u8],
    /// Its configuration blob (empty if none).
    pub config: &'static [u8],
    /// Its channel endpoints.
    pub channels: Endpoints,
    /// Its devices.
    pub devices: Devices,
    /// For a Linux qube, its initramfs and command line (`image` is the bzImage).
    pub linux: Option<crate::linux::LinuxImage>,
}

impl Qube {
    /// Allocates the qube's memory, builds its nested page tables and vCPU, and loads it.
    pub fn create(
        id: usize,
        spec: QubeSpec,
        parts: Parts,
        backend: &Backend,
        iommu: Option<&mut Iommu>,
        frames: &mut FrameAllocator,
    ) -> Result<Qube, LoadError> {
        let Parts {
            image,
            config,
            channels,
            devices,
            linux,
        } = parts;
        if linux.is_some() && !backend.runs_linux() {
            return Err(LoadError::Unsupported(
                "Linux qubes need SVM, or VMX with EFER switching and MSR bitmaps, which this CPU lacks",
            ));
        }
        let size = u64::from(spec.memory_mib) << 20;
        let host = frames
            .alloc(size, LARGE_PAGE_SIZE)
            .ok_or(LoadError::NoMemory(size))?;
        let arena_len = (NPT_ARENA_PAGES + NPT_PAGES_PER_DEVICE * devices.len() as u64) * PAGE_SIZE;
        let mut nested_tables = frames
            .alloc(arena_len, PAGE_SIZE)
            .ok_or(LoadError::NoMemory(arena_len))?;
        let root = build_npt(
            &mut nested_tables,
            host.region(),
            &channels,
            &devices,
            backend.nested_format(),
        )
        .map_err(LoadError::Paging)?;
        let mut dma_tables = None;
        if let Some(iommu) = iommu.filter(|_| devices.iter().any(|d| d.iommu)) {
            let (domain, tables, pages) = iommu
                .new_domain(host.region(), frames)
                .map_err(LoadError::Iommu)?;
            dma_tables = Some(pages);
            for d in devices.iter().filter(|d| d.iommu) {
                iommu
                    .attach(d.func.source_id(), domain, tables, frames)
                    .map_err(LoadError::Iommu)?;
            }
            crate::hvlog!(
                "qube {}: IOMMU domain {domain} maps DMA to its {} MiB only",
                spec.name.as_str(),
                spec.memory_mib
            );
        }
        let vcpu = backend
            .create_vcpu(frames, id as u32, root, linux.is_some())
            .ok_or(LoadError::NoMemory(8192))?;
        let mut q = Qube {
            id,
            spec,
            image,
            mem: GuestMemory::new(host),
            _tables: (nested_tables, dma_tables),
            vcpu,
            state: RunState::Stopped,
            restarts: 0,
            console: LineBuffer::new(),
            events: 0,
            in_wait_event: false,
            channels,
            ready: false,
            boot_flags: backend.boot_flags(),
            linux: None,
            devices,
            config,
        };
        q.linux = linux.map(|image| crate::linux::LinuxGuest::new(image, &q.channels));
        if q.spec.start == StartPolicy::AtBoot {
            q.load()?;
        } else {
            // Loaded (into zeroed memory) when first asked; its image is checked now, so a
            // bad one is refused at boot without copying it twice.
            q.check_image()?;
        }
        Ok(q)
    }

    /// Name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// (Re)loads the qube from its image into zeroed memory and resets its vCPU.
    pub fn load(&mut self) -> Result<(), LoadError> {
        if self.linux.is_some() {
            return self.load_linux();
        }
        let plan = self.unikernel_plan()?;
        for d in self.devices.iter_mut() {
            d.quiesce();
        }
        let mut info = BootInfo::new();
        plan.describe(&mut info);
        info.qube_id = self.id as u32;
        info.label = self.spec.label as u32;
        info.restart_count = self.restarts;
        info.flags = self.boot_flags;
        for (c, out) in self.channels.iter().zip(info.channels.iter_mut()) {
            out.id = c.id as u32;
            out.side = c.side;
            out.peer = c.peer as u32;
            out.set_name(&c.name);
        }
        let host_base = self.mem.host().start;
        info.device_count = self.devices.len() as u32;
        for (d, out) in self.devices.iter().zip(info.devices.iter_mut()) {
            *out = d.info(host_base);
        }
        info.set_name(&self.spec.name);
        info.set_args(&self.spec.args);
        let (image, config) = (self.image, self.config);
        let cr3 = self
            .mem
            .with_bytes(|m| unikernel::write(m, &plan, image, config, &info))
            .map_err(LoadError::Layout)?;
        let e = plan.entry;
        self.vcpu.reset(&EntryState {
            rip: e.rip,
            rsp: e.rsp,
            rdi: e.rdi,
            cr3,
            gdt_base: e.gdt_base,
            gdt_limit: e.gdt_limit,
        });
        self.state = RunState::Runnable;
        self.console = LineBuffer::new();
        self.events = 0;
        self.in_wait_event = false;
        self.ready = false;
        Ok(())
    }
}

impl Qube {
    fn load_linux(&mut self) -> Result<(), LoadError> {
        let Some(g) = self.linux.as_mut() else {
            return Err(LoadError::Unsupported("not a Linux qube"));
        };
        let entry = crate::linux::load(&mut self.mem, self.image, &g.image)?;
        g.reset(&self.channels, self.vcpu.exit_count());
        self.vcpu.reset_linux(&entry);
        self.state = RunState::Runnable;
        self.console = LineBuffer::new();
        self.events = 0;
        self.in_wait_event = false;
        self.ready = false;
        Ok(())
    }

    /// Checks that the image can be loaded, without loading it.
    fn check_image(&self) -> Result<(), LoadError> {
        if self.linux.is_some() {
            bulkhead_platform::boot::parse(self.image).map_err(LoadError::Linux)?;
        } else {
            self.unikernel_plan()?;
        }
        Ok(())
    }

    /// Where the unikernel's image, configuration, channels and device pieces go in its
    /// memory (`bulkhead_hvcore::unikernel`).
    fn unikernel_plan(&self) -> Result<UnikernelPlan, LoadError> {
        let too_many = LoadError::Layout(PlanError::TooManyChannels);
        let channels = ArrayVec::<u64, MAX_CHANNELS_PER_QUBE>::try_from_iter(
            self.channels.iter().map(|c| c.host.len()),
        )
        .ok_or(too_many)?;
        let pieces = ArrayVec::<(u64, u64), { unikernel::MAX_PIECES }>::try_from_iter(
            self.devices.iter().flat_map(|d| d.pieces.iter().copied()),
        )
        .ok_or(LoadError::Layout(PlanError::TooManyPieces))?;
        let config_len = self.config.len() as u64;
        unikernel::plan(self.image, self.mem.size(), config_len, &channels, &pieces)
            .map_err(LoadError::Layout)
    }

    /// Zeroes the qube's memory and reads it back: the number of bytes that are not zero
    /// (0 unless the wipe failed). Disposables get this before their memory is reused.
    pub fn wipe(&mut self) -> u64 {
        self.mem.zero_and_verify()
    }
}

/// Builds nested page tables mapping guest-physical `[0, size)` to the qube's host block,
/// each channel window to its channel's pages (read/write, never executable), and its
/// devices' BAR pieces to themselves (uncached), and nothing else.
fn build_npt(
    arena: &mut Frames,
    host: Region,
    channels: &Endpoints,
    devices: &Devices,
    format: NestedFormat,
) -> Result<u64, PagingError> {
    let base = arena.start();
    phys::with_frames(arena, |bytes| {
        let mut t = Tables::new(bytes, base, format)?;
        t.map_range(0, host.start, host.len(), Perm::RWX)?;
        for (local, c) in channels.iter().enumerate() {
            t.map_range(
                Endpoint::window(local),
                c.host.start,
                c.host.len(),
                Perm::RW,
            )?;
        }
        for (base, len) in devices.iter().flat_map(|d| d.pieces.iter()) {
            t.map_range(*base, *base, *len, Perm::MMIO)?;
        }
        Ok(t.root())
    })
}
