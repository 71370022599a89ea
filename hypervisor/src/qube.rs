//! A qube: the machine its guest runs on (memory, nested page tables, vCPU, channels,
//! devices, console), its guest (a unikernel or Linux, `crate::guest`), its run state and
//! restart count.

use crate::channels::{Endpoint, Endpoints};
use crate::devices::vtd::Iommu;
use crate::exits::Outcome;
use crate::guest::{Devices, Guest, GuestKind, LoadError, Machine};
use crate::memory::guest::GuestMemory;
use crate::memory::phys;
use crate::virt::{Backend, Exit};
use bulkhead_abi::manifest::{QubeSpec, StartPolicy};
use bulkhead_hvcore::console::LineBuffer;
use bulkhead_hvcore::memmap::{FrameAllocator, Frames, Region};
use bulkhead_hvcore::paging::{NestedFormat, PagingError, Perm, Tables};
use bulkhead_hvcore::sched::RunState;
use bulkhead_hvcore::unikernel::DevicePiece;
use bulkhead_hvcore::{LARGE_PAGE_SIZE, PAGE_SIZE};

/// Pages reserved for a qube's nested page tables: PML4, PDPT, up to 4 PDs for 4 GiB of
/// memory, and for the channel windows one PD plus one page table per channel.
const NPT_ARENA_PAGES: u64 = 6 + 1 + bulkhead_abi::channel::MAX_CHANNELS_PER_QUBE as u64;
/// Extra nested-table pages per assigned device: a PDPT and a PD for where its BARs are, and
/// a page table per mapped piece.
const NPT_PAGES_PER_DEVICE: u64 = 2 + crate::devices::assign::MAX_PIECES as u64;

/// Extra nested-table pages for the firmware's framebuffer: a PDPT, two PDs (it may cross
/// a GiB boundary) and the page tables of its two partly covered 2 MiB blocks.
const NPT_PAGES_FRAMEBUFFER: u64 = 5;

/// Extra nested-table pages for the bulk areas of a qube's channels: one PD for the bulk
/// windows, and the page tables each area takes (none for large, 2 MiB-aligned pools).
fn npt_bulk_pages(channels: &Endpoints) -> u64 {
    let areas = channels.iter().map(|c| c.bulk.len()).filter(|n| *n > 0);
    let tables: u64 = areas.clone().map(bulkhead_hvcore::bulk::table_pages).sum();
    u64::from(areas.count() > 0) + tables
}

/// One qube.
pub struct Qube {
    /// What its guest runs on: identity, memory, vCPU, channels, devices, console, events.
    pub machine: Machine,
    /// What runs in it.
    guest: GuestKind,
    /// The pages of its nested page tables and (with assigned devices behind an IOMMU) of
    /// its DMA remapping tables: the hardware reads them for the rest of the run.
    _tables: (Frames, Option<Frames>),
    /// Run state.
    pub state: RunState,
    /// How often it was restarted.
    pub restarts: u32,
    /// When it was last (re)loaded, ns since boot.
    pub started_ns: u64,
    /// The root of its nested page tables (its other vCPUs, if any, use them too).
    nested_root: u64,
    /// A Linux qube with several vCPUs: the board they share, whose links and stop requests
    /// its scheduler checks (none for every other qube, which skips those checks).
    siblings: Option<&'static crate::guest::linux::Board>,
}

/// What a qube is made of, besides its manifest entry.
pub struct Parts {
    /// Its guest, not loaded yet.
    pub guest: GuestKind,
    /// Its channel endpoints.
    pub channels: Endpoints,
    /// Its devices.
    pub devices: Devices,
    /// Its I/O ports.
    pub ports: bulkhead_hvcore::ioports::Ports,
    /// The firmware's framebuffer, if it is given one.
    pub framebuffer: Option<bulkhead_hvcore::bootinfo::Framebuffer>,
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
            guest,
            channels,
            devices,
            ports,
            framebuffer,
        } = parts;
        if guest.is_linux() && !backend.runs_linux() {
            return Err(LoadError::Unsupported(
                "Linux qubes need SVM, or VMX with EFER switching and MSR bitmaps, which this CPU lacks",
            ));
        }
        if !ports.is_empty() && !backend.passes_ports() {
            return Err(LoadError::Unsupported(
                "it owns I/O ports, which need VMX's I/O bitmaps, which this CPU lacks",
            ));
        }
        let size = u64::from(spec.memory_mib) << 20;
        let host = frames
            .alloc_high(size, LARGE_PAGE_SIZE)
            .ok_or(LoadError::NoMemory(size))?;
        let arena_len = (NPT_ARENA_PAGES
            + NPT_PAGES_PER_DEVICE * devices.len() as u64
            + npt_bulk_pages(&channels)
            + NPT_PAGES_FRAMEBUFFER * u64::from(framebuffer.is_some()))
            * PAGE_SIZE;
        let mut nested_tables = frames
            .alloc(arena_len, PAGE_SIZE)
            .ok_or(LoadError::NoMemory(arena_len))?;
        let root = build_npt(
            &mut nested_tables,
            host.region(),
            &channels,
            &devices,
            framebuffer.and_then(|f| f.pages()),
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
            .create_vcpu(frames, id as u32, root, guest.is_linux(), &ports)
            .ok_or(LoadError::NoMemory(8192))?;
        if let Some((first, rest)) = ports.split_first() {
            crate::hvlog!(
                "qube {}: I/O ports {first}{}{} passed through, every other port traps",
                spec.name.as_str(),
                if rest.is_empty() { "" } else { " " },
                PortList(rest)
            );
        }
        let mut q = Qube {
            machine: Machine {
                id,
                spec,
                mem: GuestMemory::new(host),
                vcpu,
                channels,
                devices,
                ports,
                framebuffer,
                console: LineBuffer::new(),
                events: 0,
                ready: false,
            },
            guest,
            _tables: (nested_tables, dma_tables),
            state: RunState::Stopped,
            restarts: 0,
            started_ns: 0,
            nested_root: root,
            siblings: None,
        };
        q.siblings = q.linux_board().filter(|b| b.vcpus > 1);
        if q.machine.spec.start == StartPolicy::AtBoot {
            q.load()?;
        } else {
            // Loaded (into zeroed memory) when first asked; its image is checked now, so a
            // bad one is refused at boot without copying it twice.
            q.guest.check(&q.machine)?;
        }
        Ok(q)
    }

    /// The root of its nested page tables.
    pub fn nested_root(&self) -> u64 {
        self.nested_root
    }

    /// The board a Linux qube's vCPUs share (none for a unikernel).
    pub fn linux_board(&self) -> Option<&'static crate::guest::linux::Board> {
        match &self.guest {
            GuestKind::Linux(l) => Some(l.board()),
            GuestKind::Unikernel(_) => None,
        }
    }

    /// Whether something must wake it from waiting: events, and for a Linux qube with
    /// several vCPUs interrupts from the others and a stop one of them asked for.
    #[inline]
    pub fn has_wake(&self) -> bool {
        self.machine.events != 0
            || self
                .siblings
                .is_some_and(|b| b.links[0].has_interrupts() || b.stop_pending())
    }

    /// A stop one of its other vCPUs asked for.
    pub fn take_stop(&mut self) -> Option<crate::exits::Stop> {
        self.siblings.and_then(|b| b.take_stop())
    }

    /// Whether it has other vCPUs (a Linux qube with several).
    pub fn has_siblings(&self) -> bool {
        self.siblings.is_some()
    }

    /// Manifest index.
    pub fn id(&self) -> usize {
        self.machine.id
    }

    /// Name.
    pub fn name(&self) -> &str {
        &self.machine.spec.name
    }

    /// What the system description says about it.
    pub fn spec(&self) -> &QubeSpec {
        &self.machine.spec
    }

    /// (Re)loads the qube from its image into zeroed memory and resets its vCPU.
    pub fn load(&mut self) -> Result<(), LoadError> {
        self.guest.load(&mut self.machine, self.restarts)?;
        let m = &mut self.machine;
        m.console = LineBuffer::new();
        m.events = 0;
        m.ready = false;
        self.state = RunState::Runnable;
        self.started_ns = crate::time::now_ns();
        Ok(())
    }

    /// Handles one exit of its vCPU.
    pub fn handle_exit(&mut self, exit: Exit) -> Outcome {
        self.guest.handle_exit(&mut self.machine, exit)
    }

    /// Before each entry: what arrived for its guest while it was out.
    pub fn before_entry(&mut self) {
        self.guest.before_entry(&mut self.machine);
    }

    /// When its guest's own timer wants it to run (ns since boot), if armed.
    pub fn wake_deadline(&self) -> Option<u64> {
        self.guest.wake_deadline()
    }

    /// It stops: its guest hands over what it still holds, then its partial console line is
    /// written out.
    pub fn on_stop(&mut self) {
        self.guest.on_stop(&mut self.machine);
        let m = &mut self.machine;
        let (id, name, label) = (m.id, &m.spec.name, m.spec.label);
        m.console
            .flush(|line| crate::console::qube_line(id, name, label, line));
    }

    /// Zeroes the qube's memory and reads it back: the number of bytes that are not zero
    /// (0 unless the wipe failed). Disposables get this before their memory is reused.
    pub fn wipe(&mut self) -> u64 {
        self.machine.mem.zero_and_verify()
    }
}

/// Port ranges separated by spaces, for a log line.
struct PortList<'a>(&'a [bulkhead_abi::io_ports::PortRange]);

impl core::fmt::Display for PortList<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            write!(f, "{}{r}", if i == 0 { "" } else { " " })?;
        }
        Ok(())
    }
}

/// Builds nested page tables mapping guest-physical `[0, size)` to the qube's host block,
/// each channel window to its channel's pages (read/write, never executable), each bulk
/// window to its channel's bulk area (the qube's own pool read/write, the peer's read-only,
/// never executable: W clear in the NPT entry / EPT bit 1 clear, and NX set / EPT X clear),
/// and its devices' BAR pieces and the firmware's framebuffer `fb` to themselves (registers
/// uncached, framebuffers write-combining, never executable), and nothing else.
fn build_npt(
    arena: &mut Frames,
    host: Region,
    channels: &Endpoints,
    devices: &Devices,
    fb: Option<Region>,
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
            let window = bulkhead_abi::channel::bulk_window(local);
            if !c.bulk.is_empty() {
                for (off, len, perm) in bulkhead_hvcore::bulk::pools(c.bulk.len(), c.side) {
                    t.map_range(window + off, c.bulk.start + off, len, perm)?;
                }
            }
        }
        let fb = fb.map(|r| DevicePiece {
            start: r.start,
            len: r.len(),
            write_combining: true,
        });
        for p in devices
            .iter()
            .flat_map(|d| d.pieces.iter())
            .chain(fb.iter())
        {
            t.map_range(p.start, p.start, p.len, p.perm())?;
        }
        Ok(t.root())
    })
}
