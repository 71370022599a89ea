//! A qube: its memory, nested page tables, vCPU, run state, console and restart count, and
//! how it is (re)loaded from its image.

use crate::channels::{Endpoint, Endpoints};
use crate::memory::guest::GuestMemory;
use crate::memory::phys;
use crate::virt::{AnyVcpu, Backend, EntryState, Vcpu};
use bulkhead_abi::boot_info::{BootInfo, layout};
use bulkhead_abi::channel::MAX_CHANNELS_PER_QUBE;
use bulkhead_abi::manifest::QubeSpec;
use bulkhead_hvcore::console::LineBuffer;
use bulkhead_hvcore::elf::{self, ElfError};
use bulkhead_hvcore::memmap::{FrameAllocator, Region};
use bulkhead_hvcore::paging::{NestedFormat, PagingError, Perm, Tables, X86Format};
use bulkhead_hvcore::sched::RunState;
use bulkhead_hvcore::{LARGE_PAGE_SIZE, PAGE_SIZE, align_up};

/// Pages reserved for a qube's nested page tables: PML4, PDPT, up to 4 PDs for 4 GiB of
/// memory, and for the channel windows one PD plus one page table per channel.
const NPT_ARENA_PAGES: u64 = 6 + 1 + bulkhead_abi::channel::MAX_CHANNELS_PER_QUBE as u64;

/// Why a qube could not be created or loaded.
#[derive(Clone, Copy, Debug)]
pub enum LoadError {
    /// Not enough free RAM for the qube.
    NoMemory(u64),
    /// The manifest names a bundle entry that does not exist.
    NoImage(u16),
    /// The image is not a loadable unikernel.
    Elf(ElfError),
    /// Page tables could not be built.
    Paging(PagingError),
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::NoMemory(b) => write!(f, "not enough free memory ({} KiB needed)", b / 1024),
            LoadError::NoImage(i) => write!(f, "the bundle has no image {i}"),
            LoadError::Elf(e) => write!(f, "bad image: {e}"),
            LoadError::Paging(e) => write!(f, "page tables: {e:?}"),
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
}

impl Qube {
    /// Allocates the qube's memory, builds its nested page tables and vCPU, and loads it.
    pub fn create(
        id: usize,
        spec: QubeSpec,
        image: &'static [u8],
        backend: &Backend,
        channels: Endpoints,
        frames: &mut FrameAllocator,
    ) -> Result<Qube, LoadError> {
        let size = u64::from(spec.memory_mib) << 20;
        let host = frames
            .alloc(size, LARGE_PAGE_SIZE)
            .ok_or(LoadError::NoMemory(size))?;
        let arena_len = NPT_ARENA_PAGES * PAGE_SIZE;
        let arena = frames
            .alloc(arena_len, PAGE_SIZE)
            .ok_or(LoadError::NoMemory(arena_len))?;
        let root = build_npt(arena, host, &channels, backend.nested_format())
            .map_err(LoadError::Paging)?;
        let vcpu = backend
            .create_vcpu(frames, id as u32, root)
            .ok_or(LoadError::NoMemory(8192))?;
        let mut q = Qube {
            id,
            spec,
            image,
            mem: GuestMemory::new(host),
            vcpu,
            state: RunState::Stopped,
            restarts: 0,
            console: LineBuffer::new(),
            events: 0,
            in_wait_event: false,
            channels,
            ready: false,
            boot_flags: backend.boot_flags(),
        };
        q.load()?;
        Ok(q)
    }

    /// Name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// (Re)loads the qube from its image into zeroed memory and resets its vCPU.
    pub fn load(&mut self) -> Result<(), LoadError> {
        let size = self.mem.size();
        let stack_top = size;
        let window_end = size - layout::STACK_SIZE;
        let plan = elf::plan(self.image, layout::IMAGE_BASE, window_end).map_err(LoadError::Elf)?;
        let heap_start = align_up(plan.end, PAGE_SIZE).unwrap_or(window_end);
        let mut info = BootInfo::new();
        info.qube_id = self.id as u32;
        info.label = self.spec.label as u32;
        info.mem_size = size;
        info.image_start = plan.start;
        info.image_end = plan.end;
        info.heap_start = heap_start;
        info.heap_end = window_end;
        info.stack_top = stack_top;
        info.restart_count = self.restarts;
        info.flags = self.boot_flags;
        info.channel_count = self.channels.len() as u32;
        for (local, (c, out)) in self
            .channels
            .iter()
            .zip(info.channels.iter_mut())
            .enumerate()
        {
            out.gpa = Endpoint::window(local);
            out.size = c.host.len();
            out.id = c.id as u32;
            out.side = c.side;
            out.peer = c.peer as u32;
            out.set_name(&c.name);
        }
        let windows: heapless::Vec<(u64, u64), { MAX_CHANNELS_PER_QUBE }> = self
            .channels
            .iter()
            .enumerate()
            .map(|(local, c)| (Endpoint::window(local), c.host.len()))
            .collect();
        info.set_name(&self.spec.name);
        info.set_args(&self.spec.args);
        let image = self.image;
        let cr3 = self.mem.with_bytes(|m| -> Result<u64, PagingError> {
            m.fill(0);
            for s in plan.segments() {
                let dst = s.gpa as usize;
                let src = s.file_offset as usize;
                m[dst..dst + s.file_len as usize]
                    .copy_from_slice(&image[src..src + s.file_len as usize]);
            }
            let bi = layout::BOOT_INFO as usize;
            let bytes = info.to_bytes();
            m[bi..bi + bytes.len()].copy_from_slice(&bytes);
            let gdt = layout::GDT as usize;
            for (i, d) in [0u64, 0x00AF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF]
                .iter()
                .enumerate()
            {
                m[gdt + i * 8..gdt + i * 8 + 8].copy_from_slice(&d.to_le_bytes());
            }
            let arena = &mut m[layout::PAGE_TABLES as usize..layout::PAGE_TABLES_END as usize];
            let mut t = Tables::new(
                arena,
                layout::PAGE_TABLES,
                X86Format {
                    user: false,
                    nx: true,
                },
            )?;
            t.map_range(0, 0, size, Perm::RWX)?;
            for (gpa, len) in &windows {
                t.map_range(*gpa, *gpa, *len, Perm::RW)?;
            }
            Ok(t.root())
        });
        let cr3 = cr3.map_err(LoadError::Paging)?;
        self.vcpu.reset(&EntryState {
            rip: plan.entry,
            rsp: stack_top,
            rdi: layout::BOOT_INFO,
            cr3,
            gdt_base: layout::GDT,
            gdt_limit: 3 * 8 - 1,
        });
        self.state = RunState::Runnable;
        self.console = LineBuffer::new();
        self.events = 0;
        self.in_wait_event = false;
        self.ready = false;
        Ok(())
    }
}

/// Builds nested page tables mapping guest-physical `[0, size)` to the qube's host block and
/// each channel window to its channel's pages (read/write, never executable), and nothing
/// else.
fn build_npt(
    arena: Region,
    host: Region,
    channels: &Endpoints,
    format: NestedFormat,
) -> Result<u64, PagingError> {
    // SAFETY: the arena was just allocated for these tables alone; no qube runs yet.
    unsafe {
        phys::with_region(arena, |bytes| {
            let mut t = Tables::new(bytes, arena.start, format)?;
            t.map_range(0, host.start, host.len(), Perm::RWX)?;
            for (local, c) in channels.iter().enumerate() {
                t.map_range(
                    Endpoint::window(local),
                    c.host.start,
                    c.host.len(),
                    Perm::RW,
                )?;
            }
            Ok(t.root())
        })
    }
}
