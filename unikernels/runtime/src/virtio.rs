//! virtio over the hypervisor's device assignment (feature `virtio`): the glue
//! `virtio-drivers` needs, and a safe virtio-net card on top of it. This is the runtime's
//! only driver module with unsafe code; every block says why it is sound.
//!
//! - [`HypercallCam`]: `virtio_drivers`' configuration-space access over the `pci_config_*`
//!   hypercalls. A `DeviceFunction` maps to the assigned device at that bus, device and
//!   function (segments are ignored); anything else reads all-ones and ignores writes, as an
//!   empty slot does.
//! - [`RtHal`]: DMA pages come zeroed and page-aligned from the runtime heap; a device sees
//!   guest-physical `p` at bus address `p + dma_offset` (0 behind an IOMMU), set once by
//!   [`attach`]; MMIO is identity-mapped and must lie in a BAR of an attached device.
//! - [`VirtioNet`]: a modern virtio-net card with its receive buffers posted, non-blocking
//!   [`VirtioNet::send`] and [`VirtioNet::receive`]; the driver polls, unless
//!   [`VirtioNet::use_msix_vector0`] gave its queues the MSI-X vector the hypervisor
//!   delivers ([`PciDevice::request_interrupts`]).
//! - [`VirtioBlk`] (module [`blk`]): a virtio-blk disk, one blocking request at a time.
//! - [`common_cfg`]: the capability walk to the common configuration structure, which
//!   `virtio-drivers` 0.13 keeps to itself.
//! - `misdirect_allocation`: a hook for the IOMMU containment test only, compiled in only
//!   with the `test-hooks` feature (test builds of sys-net).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::fmt;
use core::ops::Range;
use core::ptr::NonNull;
#[cfg(feature = "test-hooks")]
use core::sync::atomic::AtomicU32;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::virtio_platform::PlatformTransport;
pub use virtio_drivers;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::pci::bus::{Command, ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::{PciTransport, VirtioPciError};
use virtio_drivers::transport::{DeviceType, Transport};
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

use crate::boot::Boot;
use crate::pci::{self, PciDevice};

pub mod blk;
pub mod common_cfg;
use crate::sync::Mutex;
pub use blk::VirtioBlk;

/// Configuration-space access for `virtio_drivers` through the hypercalls.
#[derive(Clone, Debug)]
pub struct HypercallCam {
    devices: Vec<PciDevice>,
}

impl HypercallCam {
    /// Access to every device assigned to this qube.
    pub fn new(boot: &Boot) -> HypercallCam {
        HypercallCam {
            devices: PciDevice::all(boot).collect(),
        }
    }

    /// Access to `device` only.
    pub fn for_device(device: PciDevice) -> HypercallCam {
        HypercallCam {
            devices: alloc::vec![device],
        }
    }

    fn route(&self, df: DeviceFunction, offset: u8) -> Option<&PciDevice> {
        pci::route(
            &self.devices,
            df.bus,
            df.device,
            df.function,
            u16::from(offset),
        )
    }
}

/// The `DeviceFunction` of an assigned device.
pub fn device_function(device: &PciDevice) -> DeviceFunction {
    DeviceFunction {
        bus: device.info().bus(),
        device: device.info().device_number(),
        function: device.info().function(),
    }
}

impl ConfigurationAccess for HypercallCam {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        self.route(df, offset)
            .and_then(|d| d.config_read(u16::from(offset)).ok())
            .unwrap_or(u32::MAX)
    }

    fn write_word(&mut self, df: DeviceFunction, offset: u8, data: u32) {
        if let Some(d) = self.route(df, offset)
            && let Err(e) = d.config_write(u16::from(offset), data)
        {
            crate::debug!("pci {}: write of {data:#x} at {offset:#x}: {e}", d.bdf());
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        // Every access goes through a hypercall the hypervisor serialises; a clone shares no
        // state with the original beyond the device list.
        self.clone()
    }
}

/// Bus address of guest-physical 0 for the attached devices.
static DMA_OFFSET: AtomicU64 = AtomicU64::new(0);
/// A device has been attached (the offset is set).
static ATTACHED: AtomicBool = AtomicBool::new(false);
/// The BARs of attached devices: the only MMIO [`RtHal`] hands out.
static MMIO: Mutex<Vec<Range<u64>>> = Mutex::new(Vec::new());
/// [`misdirect_allocation`]: allocations left until the misdirected one (0: off).
#[cfg(feature = "test-hooks")]
static MISDIRECT_COUNTDOWN: AtomicU32 = AtomicU32::new(0);
/// [`misdirect_allocation`]: the bus address the device is given.
#[cfg(feature = "test-hooks")]
static MISDIRECT_BUS: AtomicU64 = AtomicU64::new(0);

/// Why [`attach`] refused a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachError {
    /// Another attached device has another DMA offset; [`RtHal`] has one for all.
    DmaOffsetDiffers {
        /// The offset in force.
        attached: u64,
        /// The new device's.
        device: u64,
    },
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachError::DmaOffsetDiffers { attached, device } => write!(
                f,
                "the device's DMA offset {device:#x} differs from the attached one's {attached:#x}"
            ),
        }
    }
}

/// Prepares [`RtHal`] for `device`: its DMA offset becomes the one all DMA addresses use
/// (set once; a second device must have the same), and its mapped BARs become MMIO that
/// `mmio_phys_to_virt` accepts.
pub fn attach(device: &PciDevice) -> Result<(), AttachError> {
    let offset = device.dma_offset();
    if ATTACHED.load(Ordering::Acquire) {
        let attached = DMA_OFFSET.load(Ordering::Relaxed);
        if attached != offset {
            return Err(AttachError::DmaOffsetDiffers {
                attached,
                device: offset,
            });
        }
    } else {
        DMA_OFFSET.store(offset, Ordering::Relaxed);
        ATTACHED.store(true, Ordering::Release);
    }
    MMIO.lock().extend(device.mapped_bars().map(|(_, r)| r));
    Ok(())
}

/// The DMA offset in force (0 before [`attach`]).
pub fn dma_offset() -> u64 {
    DMA_OFFSET.load(Ordering::Relaxed)
}

/// The bus address a device uses for guest-physical `gpa`.
pub fn bus_address(gpa: u64) -> u64 {
    gpa.wrapping_add(dma_offset())
}

/// For the IOMMU containment test only: the `nth` DMA allocation from now (1 = the next) is
/// given to the device as `bus_addr` instead of its real bus address, while the driver keeps
/// using the real memory. The device then reads and writes at `bus_addr`, which need not be
/// this qube's memory: behind an IOMMU that access must fault and reach nothing. It grants
/// nothing a qube owning a device does not have (it can always program the device with any
/// address); it only makes the test short. `nth = 0` turns it off. Only with the
/// `test-hooks` feature.
#[cfg(feature = "test-hooks")]
pub fn misdirect_allocation(nth: u32, bus_addr: u64) {
    MISDIRECT_BUS.store(bus_addr, Ordering::Relaxed);
    MISDIRECT_COUNTDOWN.store(nth, Ordering::Relaxed);
}

/// True when the misdirection armed by [`misdirect_allocation`] has been applied.
#[cfg(feature = "test-hooks")]
pub fn misdirection_applied() -> bool {
    MISDIRECT_COUNTDOWN.load(Ordering::Relaxed) == 0 && MISDIRECT_BUS.load(Ordering::Relaxed) != 0
}

/// Counts an allocation against the misdirection countdown; the bus address to give out.
#[cfg(feature = "test-hooks")]
fn device_view(real_bus: u64) -> u64 {
    match MISDIRECT_COUNTDOWN.load(Ordering::Relaxed) {
        0 => real_bus,
        1 => {
            MISDIRECT_COUNTDOWN.store(0, Ordering::Relaxed);
            MISDIRECT_BUS.load(Ordering::Relaxed)
        }
        n => {
            MISDIRECT_COUNTDOWN.store(n - 1, Ordering::Relaxed);
            real_bus
        }
    }
}

/// The bus address to give out: the real one (no test hooks in this build).
#[cfg(not(feature = "test-hooks"))]
fn device_view(real_bus: u64) -> u64 {
    real_bus
}

fn dma_layout(pages: usize) -> Option<Layout> {
    let size = pages.checked_mul(PAGE_SIZE).filter(|&s| s > 0)?;
    Layout::from_size_align(size, PAGE_SIZE).ok()
}

/// The `virtio_drivers` HAL of a Bulkhead qube (memory identity-mapped, see the module doc).
#[derive(Debug)]
pub struct RtHal;

// SAFETY: the implementation requirements of `Hal`:
// (1) `dma_alloc` returns memory from the global allocator with a page-size alignment and
//     `pages * PAGE_SIZE` bytes, zeroed by `alloc_zeroed`; it is a fresh allocation, so it
//     aliases nothing until `dma_dealloc` frees it (with the same layout, from `vaddr`; the
//     returned bus address is never used to find it, so a misdirected one is harmless). On
//     failure it returns bus address 0, which `Dma::new` treats as failure.
// (2) `mmio_phys_to_virt` returns the address itself (this qube's memory and the BARs are
//     identity-mapped) only when the range lies inside a BAR the hypervisor mapped for an
//     attached device, which no Rust object occupies; otherwise it panics.
// (3) `share` returns the bus address of the buffer's own memory (identity-mapped
//     guest-physical plus the DMA offset); nothing is copied, so `unshare` has nothing to do.
unsafe impl Hal for RtHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let Some(layout) = dma_layout(pages) else {
            return (0, NonNull::dangling());
        };
        // SAFETY: `layout` has a non-zero size (`dma_layout` refuses 0 pages).
        let ptr = unsafe { alloc::alloc::alloc_zeroed(layout) };
        match NonNull::new(ptr) {
            Some(ptr) => (device_view(bus_address(ptr.addr().get() as u64)), ptr),
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let Some(layout) = dma_layout(pages) else {
            return -1;
        };
        // SAFETY: the caller passes `vaddr` and `pages` as `dma_alloc` returned and took them
        // (the trait's contract), so `vaddr` was allocated by the global allocator with
        // exactly this layout and is not yet freed.
        unsafe { alloc::alloc::dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        let end = paddr.checked_add(size as u64);
        let inside = end.is_some_and(|end| {
            MMIO.lock()
                .iter()
                .any(|bar| bar.start <= paddr && end <= bar.end)
        });
        assert!(
            inside,
            "virtio: MMIO {paddr:#x}+{size:#x} is not in a BAR mapped into this qube"
        );
        let ptr = core::ptr::with_exposed_provenance_mut::<u8>(paddr as usize);
        NonNull::new(ptr).expect("a mapped BAR is never at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        bus_address(buffer.cast::<u8>().addr().get() as u64)
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// The PCI transport of an assigned virtio device: attaches it to [`RtHal`], turns on memory
/// decoding and bus mastering, and sets up the modern transport (accepting
/// `VIRTIO_F_ACCESS_PLATFORM` when the device is behind an IOMMU).
fn transport(device: &PciDevice) -> Result<PlatformTransport, InitError> {
    attach(device).map_err(InitError::Attach)?;
    let df = device_function(device);
    let mut root = PciRoot::new(HypercallCam::for_device(*device));
    let (_, command) = root.get_status_command(df);
    root.set_command(df, command | Command::MEMORY_SPACE | Command::BUS_MASTER);
    let transport = PciTransport::new::<RtHal, _>(&mut root, df).map_err(InitError::Pci)?;
    Ok(PlatformTransport::new(transport))
}

/// Slots per virtqueue of [`VirtioNet`]: as many as a network channel's ring, so a burst
/// from the firewall (an AppVM's 64 KiB segment is 45 frames) fits the transmit queue and
/// sys-net does not sleep on a full one (`cargo xtask bench --network`: with 32, sys-net
/// slept every second frame of an upload).
pub const NET_QUEUE_SIZE: usize = 128;
/// Bytes per receive and transmit buffer: the virtio-net header and a full Ethernet frame.
const NET_BUF_LEN: usize = 2048;
/// Largest frame [`VirtioNet::send`] takes (Ethernet II without FCS).
pub const MAX_FRAME: usize = bulkhead_abi::proto::MAX_FRAME;

/// Why a virtio device (a virtio-net card, a virtio-blk disk) could not be brought up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitError {
    /// [`attach`] refused the device.
    Attach(AttachError),
    /// The PCI transport could not be set up (capabilities, BARs).
    Pci(VirtioPciError),
    /// It is a virtio device, but not a network card.
    NotNetwork(DeviceType),
    /// It is a virtio device, but not a block device (a disk).
    NotBlock(DeviceType),
    /// The virtio-net driver failed.
    Virtio(virtio_drivers::Error),
    /// The virtio-blk driver failed.
    Block(virtio_drivers::Error),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::Attach(e) => write!(f, "{e}"),
            InitError::Pci(e) => write!(f, "virtio PCI transport: {e}"),
            InitError::NotNetwork(t) => {
                write!(f, "the virtio device is a {t:?}, not a network card")
            }
            InitError::NotBlock(t) => {
                write!(f, "the virtio device is a {t:?}, not a block device")
            }
            InitError::Virtio(e) => write!(f, "virtio-net: {e}"),
            InitError::Block(e) => write!(f, "virtio-blk: {e}"),
        }
    }
}

/// Why a frame was not sent or received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    /// Every transmit slot is in flight; try again after the card has sent some.
    Busy,
    /// The frame is longer than [`MAX_FRAME`].
    TooLong(usize),
    /// The virtio driver reported an error.
    Virtio(virtio_drivers::Error),
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Busy => f.write_str("every transmit slot is in flight"),
            NetError::TooLong(n) => write!(f, "frame of {n} bytes, at most {MAX_FRAME}"),
            NetError::Virtio(e) => write!(f, "virtio-net: {e}"),
        }
    }
}

impl From<virtio_drivers::Error> for NetError {
    fn from(e: virtio_drivers::Error) -> Self {
        NetError::Virtio(e)
    }
}

/// Counters of a [`VirtioNet`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames received.
    pub rx_frames: u64,
    /// Frames handed to the card.
    pub tx_frames: u64,
    /// Sends refused because every slot was in flight.
    pub tx_busy: u64,
    /// Receive completions the driver reported as broken (dropped).
    pub rx_errors: u64,
}

/// A virtio-net card (modern PCI transport), polled.
///
/// Every receive slot holds a posted buffer; [`VirtioNet::receive`] hands out one completed
/// frame and posts its buffer again. [`VirtioNet::send`] copies a frame into a free transmit
/// buffer and returns at once; buffers come back as the card completes them.
pub struct VirtioNet {
    raw: VirtIONetRaw<RtHal, PlatformTransport, NET_QUEUE_SIZE>,
    /// Posted receive buffers by token (descriptor head); the device owns them.
    rx: Vec<Option<Box<[u8]>>>,
    /// In-flight transmit buffers by token, with the length handed to the device.
    tx: Vec<Option<(Box<[u8]>, usize)>>,
    /// Transmit buffers the device gave back.
    spare: Vec<Box<[u8]>>,
    /// The device (for [`VirtioNet::use_msix_vector0`]).
    device: PciDevice,
    /// Its queues signal MSI-X vector 0.
    interrupts: bool,
    /// Counters.
    pub stats: NetStats,
}

impl VirtioNet {
    /// Brings up `device`: attaches it to [`RtHal`], turns on memory decoding and bus
    /// mastering, sets up the PCI transport and the two queues (transmit first, then
    /// receive: two DMA allocations each, the ring the driver writes then the one the device
    /// writes), and posts every receive buffer.
    pub fn new(device: &PciDevice) -> Result<VirtioNet, InitError> {
        let transport = transport(device)?;
        if transport.device_type() != DeviceType::Network {
            return Err(InitError::NotNetwork(transport.device_type()));
        }
        let mut raw = VirtIONetRaw::new(transport).map_err(InitError::Virtio)?;
        raw.disable_interrupts();
        let mut card = VirtioNet {
            raw,
            rx: (0..NET_QUEUE_SIZE).map(|_| None).collect(),
            tx: (0..NET_QUEUE_SIZE).map(|_| None).collect(),
            spare: Vec::new(),
            device: *device,
            interrupts: false,
            stats: NetStats::default(),
        };
        for _ in 0..NET_QUEUE_SIZE {
            card.post_rx(alloc::vec![0; NET_BUF_LEN].into_boxed_slice())
                .map_err(InitError::Virtio)?;
        }
        Ok(card)
    }

    /// The card's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.raw.mac_address()
    }

    /// Makes both queues (0 receive, 1 transmit) signal MSI-X vector 0, the entry the
    /// hypervisor programs for [`PciDevice::request_interrupts`]: a modern virtio-pci device
    /// with MSI-X on sends nothing for a queue whose vector is `NO_VECTOR` (its value after
    /// reset; `virtio-drivers` 0.13 never sets it). Each vector is read back: the device
    /// answers `NO_VECTOR` for one it refused ([`common_cfg::CapError::VectorRefused`]).
    /// Configuration changes (link state) stay at `NO_VECTOR`: sys-net does not watch them.
    /// Also lifts the avail rings' `NO_INTERRUPT` flag (set by [`VirtioNet::new`]; it has
    /// no effect when `VIRTIO_F_EVENT_IDX` is negotiated, as with QEMU: then the driver's
    /// `used_event`, kept at the last used entry it took, asks for an interrupt per new one).
    ///
    /// Call it after the hypercall turned MSI-X on, then look at both queues once: a buffer
    /// used before the vectors were set raised no interrupt.
    pub fn use_msix_vector0(&mut self) -> Result<(), common_cfg::CapError> {
        let cfg = common_cfg::CommonCfg::of(&self.device)?;
        for queue in [0, 1] {
            if cfg.set_queue_vector(queue, 0) != 0 {
                return Err(common_cfg::CapError::VectorRefused(queue));
            }
        }
        self.raw.enable_interrupts();
        self.interrupts = true;
        Ok(())
    }

    /// With interrupts on and a queue found empty: a full fence between this side's last
    /// `used_event` store (made when an entry was taken) and a second look at the queue.
    /// Without it the look could be answered before the store is visible, and a device
    /// that used a buffer in between would see the old `used_event` and send no interrupt.
    fn settle(&self) {
        if self.interrupts {
            core::sync::atomic::fence(Ordering::SeqCst);
        }
    }

    /// Transmit buffers the device still holds.
    pub fn tx_in_flight(&self) -> usize {
        self.tx.iter().filter(|t| t.is_some()).count()
    }

    /// Hands `buf` to the device as a receive buffer.
    fn post_rx(&mut self, mut buf: Box<[u8]>) -> Result<(), virtio_drivers::Error> {
        // SAFETY: `buf` is a heap allocation that, from here until `receive` takes it back
        // for this token and calls `receive_complete`, is only moved as a `Box` (its bytes
        // stay where they are) and never read or written by the driver.
        let token = unsafe { self.raw.receive_begin(&mut buf) }?;
        let slot = self
            .rx
            .get_mut(usize::from(token))
            .ok_or(virtio_drivers::Error::WrongToken)?;
        if let Some(old) = slot.replace(buf) {
            // A token is a free descriptor head, so the slot is empty; if a broken queue ever
            // reused one, the old buffer may still be the device's: never free it.
            core::mem::forget(old);
        }
        Ok(())
    }

    /// Takes one received frame, if the card has one, and calls `f` on it; its buffer is
    /// posted again afterwards.
    pub fn receive<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, NetError> {
        let token = match self.raw.poll_receive() {
            Some(t) => t,
            None => {
                self.settle();
                match self.raw.poll_receive() {
                    Some(t) => t,
                    None => return Ok(None),
                }
            }
        };
        let Some(mut buf) = self.rx.get_mut(usize::from(token)).and_then(Option::take) else {
            return Err(NetError::Virtio(virtio_drivers::Error::WrongToken));
        };
        // SAFETY: `buf` is the buffer `post_rx` passed to `receive_begin` for this token
        // (kept in `rx[token]` since).
        let done = unsafe { self.raw.receive_complete(token, &mut buf) };
        let result = match done {
            Ok((header, len)) => match buf.get(header..header + len) {
                Some(frame) => {
                    self.stats.rx_frames += 1;
                    Some(f(frame))
                }
                None => {
                    self.stats.rx_errors += 1;
                    None
                }
            },
            Err(virtio_drivers::Error::WrongToken) => {
                // The queue did not give the buffer back: it may still be the device's.
                core::mem::forget(buf);
                return Err(NetError::Virtio(virtio_drivers::Error::WrongToken));
            }
            Err(_) => {
                self.stats.rx_errors += 1;
                None
            }
        };
        self.post_rx(buf)?;
        Ok(result)
    }

    /// Takes back the transmit buffers the card has finished with; returns how many.
    pub fn reclaim_tx(&mut self) -> usize {
        let mut n = 0;
        while let Some(token) = self.raw.poll_transmit() {
            let Some((buf, len)) = self.tx.get_mut(usize::from(token)).and_then(Option::take)
            else {
                break;
            };
            // SAFETY: `buf[..len]` is exactly the slice `send` passed to `transmit_begin` for
            // this token (kept in `tx[token]` since).
            match unsafe { self.raw.transmit_complete(token, &buf[..len]) } {
                Ok(_) => self.spare.push(buf),
                // Not given back: it may still be the device's.
                Err(_) => core::mem::forget(buf),
            }
            n += 1;
        }
        n
    }

    /// True when [`VirtioNet::send`] would find a free transmit slot (after taking back
    /// what the card has finished with).
    pub fn can_send(&mut self) -> bool {
        self.reclaim_tx();
        if !self.raw.can_send() {
            self.settle();
            self.reclaim_tx();
        }
        self.raw.can_send()
    }

    /// Queues `frame` for sending and returns at once ([`NetError::Busy`] when every
    /// transmit slot is in flight).
    pub fn send(&mut self, frame: &[u8]) -> Result<(), NetError> {
        if frame.len() > MAX_FRAME {
            return Err(NetError::TooLong(frame.len()));
        }
        self.reclaim_tx();
        if !self.raw.can_send() {
            self.stats.tx_busy += 1;
            return Err(NetError::Busy);
        }
        let mut buf = self
            .spare
            .pop()
            .unwrap_or_else(|| alloc::vec![0; NET_BUF_LEN].into_boxed_slice());
        let header = self.raw.fill_buffer_header(&mut buf)?;
        let len = header + frame.len();
        buf[header..len].copy_from_slice(frame);
        // SAFETY: `buf` is a heap allocation that, until `reclaim_tx` takes it back for this
        // token and calls `transmit_complete`, is only moved as a `Box` and never touched.
        let token = match unsafe { self.raw.transmit_begin(&buf[..len]) } {
            Ok(token) => token,
            Err(e) => {
                self.spare.push(buf);
                return Err(e.into());
            }
        };
        match self.tx.get_mut(usize::from(token)) {
            Some(slot) => {
                if let Some((old, _)) = slot.replace((buf, len)) {
                    core::mem::forget(old);
                }
            }
            None => core::mem::forget(buf),
        }
        self.stats.tx_frames += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Boot info of an 8 MiB qube with a small image and no devices yet.
    fn eight_mib_qube() -> bulkhead_abi::boot_info::BootInfo {
        let mut b = bulkhead_abi::boot_info::BootInfo::new();
        b.mem_size = 8 << 20;
        b.image_start = 0x20_0000;
        b.image_end = 0x20_3000;
        b.heap_start = 0x20_3000;
        b.stack_top = 8 << 20;
        b.heap_end = b.stack_top - bulkhead_abi::boot_info::layout::STACK_SIZE - 0x1000;
        b
    }

    /// The test hook: the second allocation after arming is misdirected; the CPU keeps real
    /// memory. `offset` is the attached device's DMA offset.
    #[cfg(feature = "test-hooks")]
    fn misdirection(offset: u64) {
        misdirect_allocation(2, 0xdead_0000);
        let (bus1, p1) = RtHal::dma_alloc(1, BufferDirection::DriverToDevice);
        assert!(!misdirection_applied());
        let (bus2, p2) = RtHal::dma_alloc(1, BufferDirection::DeviceToDriver);
        let (bus3, p3) = RtHal::dma_alloc(1, BufferDirection::DeviceToDriver);
        assert_eq!(bus1, p1.addr().get() as u64 + offset);
        assert_eq!(bus2, 0xdead_0000);
        assert_eq!(bus3, p3.addr().get() as u64 + offset);
        assert!(misdirection_applied());
        // SAFETY: each as returned by `dma_alloc` above, freed once (by its real address).
        unsafe {
            assert_eq!(RtHal::dma_dealloc(bus1, p1, 1), 0);
            assert_eq!(RtHal::dma_dealloc(bus2, p2, 1), 0);
            assert_eq!(RtHal::dma_dealloc(bus3, p3, 1), 0);
        }
    }

    #[test]
    fn dma_pages_are_zeroed_aligned_and_offset() {
        // The only test that attaches: the statics are process-wide.
        let mut b = eight_mib_qube();
        b.device_count = 2;
        b.devices[0].dma_offset = 0x4000_0000;
        b.devices[0].bars[4] = bulkhead_abi::boot_info::BarInfo {
            gpa: 0xfe00_0000,
            size: 0x4000,
        };
        b.devices[1].dma_offset = 0x8000_0000;
        let boot = Boot::new(b, 0x20_0000..0x20_1000).unwrap();
        let dev = PciDevice::new(&boot, 0).unwrap();
        attach(&dev).unwrap();
        attach(&dev).unwrap();
        assert_eq!(
            attach(&PciDevice::new(&boot, 1).unwrap()),
            Err(AttachError::DmaOffsetDiffers {
                attached: 0x4000_0000,
                device: 0x8000_0000
            })
        );

        let (bus, ptr) = RtHal::dma_alloc(3, BufferDirection::Both);
        assert_eq!(ptr.addr().get() % PAGE_SIZE, 0);
        assert_eq!(bus, ptr.addr().get() as u64 + 0x4000_0000);
        // SAFETY: `ptr` is a live 3-page allocation from `dma_alloc`.
        let bytes = unsafe { core::slice::from_raw_parts(ptr.as_ptr(), 3 * PAGE_SIZE) };
        assert!(bytes.iter().all(|&b| b == 0));
        // SAFETY: as returned by `dma_alloc` above, freed once.
        assert_eq!(unsafe { RtHal::dma_dealloc(bus, ptr, 3) }, 0);
        assert_eq!(RtHal::dma_alloc(0, BufferDirection::Both).0, 0);

        // The second allocation after arming is misdirected; the CPU keeps real memory.
        #[cfg(feature = "test-hooks")]
        misdirection(0x4000_0000);

        // Shared buffers are offset like DMA pages.
        let buf = [0u8; 16];
        // SAFETY: `buf` is a live, non-empty buffer.
        let shared = unsafe { RtHal::share(NonNull::from(&buf[..]), BufferDirection::Both) };
        assert_eq!(shared, buf.as_ptr().addr() as u64 + 0x4000_0000);

        // MMIO is identity inside an attached BAR and refused outside.
        // SAFETY: only translates the address; nothing is accessed.
        let v = unsafe { RtHal::mmio_phys_to_virt(0xfe00_1000, 0x100) };
        assert_eq!(v.addr().get(), 0xfe00_1000);
        let outside = std::panic::catch_unwind(|| {
            // SAFETY: only translates the address (and panics); nothing is accessed.
            unsafe { RtHal::mmio_phys_to_virt(0xfe00_3f00, 0x200) }
        });
        assert!(outside.is_err(), "a range past the BAR is refused");
    }

    #[test]
    fn the_cam_answers_only_for_assigned_devices() {
        let mut b = eight_mib_qube();
        b.device_count = 1;
        b.devices[0].address = 1 << 8 | 4 << 3 | 2;
        let boot = Boot::new(b, 0x20_0000..0x20_1000).unwrap();
        let mut cam = HypercallCam::new(&boot);
        let dev = PciDevice::new(&boot, 0).unwrap();
        let df = device_function(&dev);
        assert_eq!(
            df,
            DeviceFunction {
                bus: 1,
                device: 4,
                function: 2
            }
        );
        assert!(cam.route(df, 0x10).is_some());
        // Not assigned: reads all-ones and writes are dropped, without a hypercall (which
        // would not run on the host).
        for other in [
            DeviceFunction {
                bus: 1,
                device: 4,
                function: 3,
            },
            DeviceFunction {
                bus: 0,
                device: 4,
                function: 2,
            },
            DeviceFunction {
                bus: 1,
                device: 5,
                function: 2,
            },
        ] {
            assert!(cam.route(other, 0).is_none());
            assert_eq!(cam.read_word(other, 0), u32::MAX);
            cam.write_word(other, 4, 0x6);
        }
        // A misaligned offset never reaches the hypervisor either.
        assert_eq!(cam.read_word(df, 0x11), u32::MAX);
        // SAFETY: the clone is only read, as the contract asks.
        let clone = unsafe { cam.unsafe_clone() };
        assert_eq!(clone.devices, cam.devices);
    }
}
