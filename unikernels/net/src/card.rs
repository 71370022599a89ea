//! The network card, whichever driver it needs: chosen by the PCI vendor and device ID of
//! the device the system description assigned, so the bridge does not care which it is.

use alloc::boxed::Box;
use core::fmt;

use bulkhead_abi::hypercall::HcError;
use bulkhead_rt::e1000e::{self, E1000e};
use bulkhead_rt::pci::PciDevice;
use bulkhead_rt::virtio::{self, VirtioNet};
use bulkhead_rt::{Boot, info};

/// PCI vendor of virtio devices.
const VIRTIO_VENDOR: u16 = 0x1af4;
/// virtio-net device IDs: modern (1.0) and transitional. Both must offer the modern PCI
/// capabilities, which `virtio-drivers` uses.
const VIRTIO_NET_IDS: [u16; 2] = [0x1041, 0x1000];

/// Which driver a device needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// virtio-net (`1af4:1041`, `1af4:1000`).
    VirtioNet,
    /// Intel e1000e (`8086:10d3` and the family in [`e1000e::DEVICE_IDS`]).
    E1000e,
}

impl Kind {
    /// The driver for `vendor:device`, if sys-net has one.
    pub fn of(vendor: u16, device: u16) -> Option<Kind> {
        match vendor {
            VIRTIO_VENDOR if VIRTIO_NET_IDS.contains(&device) => Some(Kind::VirtioNet),
            e1000e::VENDOR if e1000e::DEVICE_IDS.contains(&device) => Some(Kind::E1000e),
            _ => None,
        }
    }

    /// The driver's name in log lines.
    pub fn name(self) -> &'static str {
        match self {
            Kind::VirtioNet => "virtio-net",
            Kind::E1000e => "e1000e",
        }
    }
}

/// The first assigned device sys-net has a driver for.
pub fn find(boot: &Boot) -> Option<(PciDevice, Kind)> {
    PciDevice::all(boot).find_map(|d| Kind::of(d.info().vendor, d.info().device).map(|k| (d, k)))
}

/// Why the card could not be brought up.
pub enum InitError {
    /// From the virtio-net driver.
    Virtio(virtio::InitError),
    /// From the e1000e driver.
    E1000e(e1000e::InitError),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::Virtio(e) => write!(f, "{e}"),
            InitError::E1000e(e) => write!(f, "{e}"),
        }
    }
}

/// Why a frame was not sent or received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    /// From the virtio-net driver.
    Virtio(virtio::NetError),
    /// From the e1000e driver.
    E1000e(e1000e::NetError),
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Virtio(e) => write!(f, "{e}"),
            NetError::E1000e(e) => write!(f, "{e}"),
        }
    }
}

/// Why the card's interrupts are not on (sys-net then polls it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqError {
    /// The hypervisor refused: no interrupt remapping on this machine, or the card has
    /// neither MSI nor MSI-X.
    Denied,
    /// Another answer from the hypervisor.
    Hypercall(HcError),
    /// The virtio queues could not be given MSI-X vector 0.
    Virtio(virtio::common_cfg::CapError),
}

impl fmt::Display for IrqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IrqError::Denied => f.write_str("no interrupt remapping or MSI"),
            IrqError::Hypercall(e) => write!(f, "hypercall error {e:?}"),
            IrqError::Virtio(e) => write!(f, "virtio: {e}"),
        }
    }
}

/// Counters of a card, whichever its driver.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Frames received.
    pub rx_frames: u64,
    /// Frames handed to the card.
    pub tx_frames: u64,
    /// Sends refused because every slot was in flight.
    pub tx_busy: u64,
}

/// A network card that is up. Both drivers' state is boxed: sys-net's `main` frame is about
/// 50 KiB of its 64 KiB stack (the smoltcp interface), and an unboxed virtio-net card (4.5 KiB
/// of queue state) copied through it on the way into the bridge made it overrun the stack
/// in the `iommu-dma-escape` test (sys-net jumped to a wild address).
pub enum Card {
    /// A virtio-net card.
    Virtio(Box<VirtioNet>),
    /// An e1000e card.
    E1000e(Box<E1000e>),
}

impl Card {
    /// Brings up `dev` with the driver `kind` says.
    pub fn new(dev: &PciDevice, kind: Kind) -> Result<Card, InitError> {
        info!(
            "net: driving card {} with the {} driver",
            dev.bdf(),
            kind.name()
        );
        let card = match kind {
            Kind::VirtioNet => {
                Card::Virtio(Box::new(VirtioNet::new(dev).map_err(InitError::Virtio)?))
            }
            Kind::E1000e => Card::E1000e(Box::new(E1000e::new(dev).map_err(InitError::E1000e)?)),
        };
        Ok(card)
    }

    /// Turns the card's interrupts on; returns the event bit they raise. First the hypercall
    /// (the hypervisor programs MSI, or MSI-X entry 0), then the card is told to signal:
    /// e1000e unmasks its causes in IMS (which sends a message at once for a cause already
    /// pending), virtio-net gives both queues MSI-X vector 0. Arming the card first would
    /// not help: until the hypercall a cause goes to the legacy INTx line, which nobody
    /// hears. A virtio buffer used before its queue had a vector raised nothing, so the
    /// caller looks at the card once afterwards (the bridge's next round does). On an
    /// error the card stays as polled as before (virtio: MSI-X may be on, with no queue
    /// using it).
    pub fn enable_interrupts(&mut self, dev: &PciDevice) -> Result<u32, IrqError> {
        let bit = dev.request_interrupts().map_err(|e| match e {
            HcError::Denied => IrqError::Denied,
            other => IrqError::Hypercall(other),
        })?;
        match self {
            Card::Virtio(c) => c.use_msix_vector0().map_err(IrqError::Virtio)?,
            Card::E1000e(c) => c.enable_interrupts(),
        }
        Ok(bit)
    }

    /// Acknowledges the card's pending interrupt causes, before its rings are drained (a
    /// cause left set raises no new message). e1000e: ICR read (and written back); virtio-net:
    /// nothing (MSI-X messages need no acknowledgement; its `used_event` is kept by the
    /// driver as it takes buffers).
    pub fn acknowledge(&mut self) {
        match self {
            Card::Virtio(_) => {}
            Card::E1000e(c) => {
                c.acknowledge();
            }
        }
    }

    /// The card's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        match self {
            Card::Virtio(c) => c.mac(),
            Card::E1000e(c) => c.mac(),
        }
    }

    /// Takes one received frame, if the card has one, and calls `f` on it.
    pub fn receive<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, NetError> {
        match self {
            Card::Virtio(c) => c.receive(f).map_err(NetError::Virtio),
            Card::E1000e(c) => c.receive(f).map_err(NetError::E1000e),
        }
    }

    /// True when [`Card::send`] would find a free transmit slot.
    pub fn can_send(&mut self) -> bool {
        match self {
            Card::Virtio(c) => c.can_send(),
            Card::E1000e(c) => c.can_send(),
        }
    }

    /// Queues `frame` for sending and returns at once.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), NetError> {
        match self {
            Card::Virtio(c) => c.send(frame).map_err(NetError::Virtio),
            Card::E1000e(c) => c.send(frame).map_err(NetError::E1000e),
        }
    }

    /// The driver's counters.
    pub fn stats(&self) -> Stats {
        match self {
            Card::Virtio(c) => Stats {
                rx_frames: c.stats.rx_frames,
                tx_frames: c.stats.tx_frames,
                tx_busy: c.stats.tx_busy,
            },
            Card::E1000e(c) => Stats {
                rx_frames: c.stats.rx_frames,
                tx_frames: c.stats.tx_frames,
                tx_busy: c.stats.tx_busy,
            },
        }
    }
}
