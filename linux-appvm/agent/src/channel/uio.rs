//! Channel devices through sysfs and `uio_pci_generic`: no driver of our own in the kernel.
//!
//! For each PCI function with vendor [`VENDOR_ID`] and device [`CHANNEL_DEVICE_ID`]:
//! 1. read its [`InfoCap`] at [`INFO_CAP_OFFSET`] of `config` (name, side, region size, bulk
//!    area size);
//! 2. bind it to `uio_pci_generic` (`"bd00 0001"` into the driver's `new_id`; `bind` with
//!    its address if it is still unbound) and wait for `uio/uioK` to appear;
//! 3. open `/dev/uioK` (made with mknod from `/sys/class/uio/uioK/dev` if devtmpfs lacks
//!    it): a 4-byte read returns the interrupt count once INTx fired (the driver's handler
//!    masks INTx with `COMMAND.INTX_DISABLE`);
//! 4. mmap `resource0` (read/write, shared, the region size) and open the ring on it; when the
//!    capability names a bulk area, mmap `resource4` the same way (the area's size; the
//!    peer's pool is read-only underneath: a write there stops the AppVM) and open the
//!    channel's [`bulkhead_ring::Bulk`] on it;
//! 5. `resource2` is the register block: a 4-byte `pwrite` at [`reg::DOORBELL`] notifies the
//!    peer, a 4-byte `pread` at [`reg::EVENTS`] takes the pending event;
//! 6. after an interrupt: read EVENTS, then clear `INTX_DISABLE` (bit 10 of COMMAND) with a
//!    1-byte write of COMMAND's high byte (offset 5 of `config`), so the next event
//!    interrupts again.
//!
//! Without an interrupt line (`irq` 0) the channel is polled instead.

use super::ring::RingChannel;
use super::{ChannelError, Doorbell, Side, Transport};
use crate::sys::{self, Mapping};
use bulkhead_abi::guest_pci::{CHANNEL_DEVICE_ID, INFO_CAP_OFFSET, InfoCap, VENDOR_ID, reg};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where PCI devices are listed.
pub const PCI_DEVICES: &str = "/sys/bus/pci/devices";
/// The generic driver's directory.
pub const UIO_DRIVER: &str = "/sys/bus/pci/drivers/uio_pci_generic";
/// What `new_id` is given.
pub const NEW_ID: &str = "bd00 0001";
/// `COMMAND.INTX_DISABLE`.
const INTX_DISABLE: u16 = 1 << 10;

/// A channel device found in sysfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Its PCI address (`0000:00:01.0`).
    pub address: String,
    /// Its sysfs directory.
    pub dir: PathBuf,
    /// What its capability says.
    pub info: InfoCap,
}

/// A `0x....` id file's value.
pub fn parse_id(text: &str) -> Option<u16> {
    u16::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()
}

/// A `MAJOR:MINOR` dev file's value.
pub fn parse_dev(text: &str) -> Option<(u32, u32)> {
    let (a, b) = text.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The channel devices under `devices` (a `/sys/bus/pci/devices`), sorted by address; the
/// ones whose capability does not parse are returned as errors (address, why).
pub fn scan(devices: &Path) -> (Vec<Found>, Vec<(String, String)>) {
    let (mut found, mut bad) = (Vec::new(), Vec::new());
    let Ok(entries) = fs::read_dir(devices) else {
        return (found, bad);
    };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        let id = |f: &str| {
            fs::read_to_string(dir.join(f))
                .ok()
                .and_then(|t| parse_id(&t))
        };
        if id("vendor") != Some(VENDOR_ID) || id("device") != Some(CHANNEL_DEVICE_ID) {
            continue;
        }
        let address = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut cap = [0u8; InfoCap::LEN];
        let read = File::open(dir.join("config"))
            .and_then(|f| f.read_exact_at(&mut cap, u64::from(INFO_CAP_OFFSET)));
        match read.map(|()| InfoCap::parse(&cap)) {
            Ok(Some(info)) => found.push(Found { address, dir, info }),
            Ok(None) => bad.push((address, "no Bulkhead channel capability at 0x40".into())),
            Err(e) => bad.push((address, format!("config space: {e}"))),
        }
    }
    (found, bad)
}

/// The channel device named `name` (a program that serves one channel: the self-tests).
pub fn find_named(name: &str) -> Result<Found, String> {
    let (found, _) = scan(Path::new(PCI_DEVICES));
    found
        .into_iter()
        .find(|f| f.info.name.as_str() == name)
        .ok_or_else(|| format!("no channel named {name}"))
}

/// Finds, binds (the agent has bound it already; again is harmless) and opens the channel
/// device named `name`, for a program that serves that one channel beside the agent, which
/// leaves it alone (the self-tests).
pub fn open_named(name: &str) -> Result<UioChannel, String> {
    let found = find_named(name)?;
    let _ = bind_all(std::slice::from_ref(&found));
    UioChannel::open(found).map_err(|e| format!("cannot open {name}: {e}"))
}

/// The doorbell register of a channel device.
#[derive(Debug)]
pub struct IoBell {
    regs: File,
}

impl Doorbell for IoBell {
    fn ring(&mut self) -> io::Result<()> {
        self.regs
            .write_all_at(&1u32.to_le_bytes(), u64::from(reg::DOORBELL))
    }
}

/// An open channel device. (Fields drop in order: the ring before the mappings under it.)
pub struct UioChannel {
    /// The device.
    pub found: Found,
    /// The ring endpoint over BAR0, with the bulk area over BAR4 if the channel has one.
    pub ring: RingChannel<IoBell>,
    /// `/dev/uioK`, when the device has an interrupt line.
    uio: Option<File>,
    regs: File,
    config: File,
    /// COMMAND as read at open.
    command: u16,
    /// An interrupt was taken and INTx not unmasked since.
    masked: bool,
    /// Interrupts seen.
    pub interrupts: u64,
    /// Acknowledgements that failed (the event loop logs the first).
    pub ack_errors: u64,
    _mapping: Mapping,
    _bulk_mapping: Option<Mapping>,
}

impl std::fmt::Debug for UioChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UioChannel")
            .field("found", &self.found)
            .finish_non_exhaustive()
    }
}

/// Writes `text` to a sysfs attribute.
fn sysfs_write(path: &Path, text: &str) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| io::Write::write_all(&mut f, text.as_bytes()))
}

/// The name of the driver bound to the device in `dir`, if any.
fn driver_of(dir: &Path) -> Option<String> {
    let link = fs::read_link(dir.join("driver")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// Binds every channel device to `uio_pci_generic` (once for all: `new_id` probes every
/// unbound match); then binds by address any that stayed unbound.
pub fn bind_all(found: &[Found]) -> io::Result<()> {
    if found
        .iter()
        .all(|f| driver_of(&f.dir).as_deref() == Some("uio_pci_generic"))
    {
        return Ok(());
    }
    match sysfs_write(&Path::new(UIO_DRIVER).join("new_id"), NEW_ID) {
        // EEXIST: the id was added before (the agent restarted).
        Err(e) if e.raw_os_error() != Some(libc::EEXIST) => {
            return Err(io::Error::other(format!("{UIO_DRIVER}/new_id: {e}")));
        }
        _ => {}
    }
    for f in found {
        if driver_of(&f.dir).is_none() {
            let _ = sysfs_write(&Path::new(UIO_DRIVER).join("bind"), &f.address);
        }
    }
    Ok(())
}

/// The `uioK` name under the device, waiting up to `timeout` for the driver to make it.
fn uio_name(dir: &Path, timeout: Duration) -> io::Result<String> {
    let start = Instant::now();
    loop {
        if let Ok(mut entries) = fs::read_dir(dir.join("uio"))
            && let Some(Ok(e)) = entries.next()
        {
            return Ok(e.file_name().to_string_lossy().into_owned());
        }
        if start.elapsed() > timeout {
            let driver = driver_of(dir).unwrap_or_else(|| "no driver".into());
            return Err(io::Error::other(format!(
                "no uio device appeared ({driver})"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl UioChannel {
    /// Opens a bound device: its uio node, the mmap'd region and the ring on it, the
    /// register block; then takes any pending event and unmasks INTx.
    pub fn open(found: Found) -> io::Result<UioChannel> {
        let dir = found.dir.clone();
        let irq = fs::read_to_string(dir.join("irq")).unwrap_or_default();
        let uio = if irq.trim() == "0" || irq.trim().is_empty() {
            None
        } else {
            let name = uio_name(&dir, Duration::from_secs(2))?;
            let node = PathBuf::from("/dev").join(&name);
            if !node.exists() {
                let dev = fs::read_to_string(Path::new("/sys/class/uio").join(&name).join("dev"))?;
                let (major, minor) = parse_dev(&dev)
                    .ok_or_else(|| io::Error::other(format!("bad dev file {dev:?}")))?;
                sys::mknod_char(&node, major, minor)?;
            }
            let f = File::open(&node)?;
            sys::set_nonblocking(&f)?;
            Some(f)
        };
        let rw = |f: &str| OpenOptions::new().read(true).write(true).open(dir.join(f));
        let map_bar = |file: &str, size: u32| -> io::Result<Mapping> {
            let bar = rw(file)?;
            if bar.metadata()?.len() < u64::from(size) {
                return Err(io::Error::other(format!(
                    "{file} is smaller than the {size} bytes the capability names"
                )));
            }
            Mapping::new(&bar, size as usize)
        };
        let mapping = map_bar("resource0", found.info.size)?;
        let bulk_mapping = match found.info.bulk_size {
            0 => None,
            n => Some(map_bar("resource4", n)?),
        };
        let regs = rw("resource2")?;
        let config = rw("config")?;
        let side = if found.info.side == 0 {
            Side::A
        } else {
            Side::B
        };
        let bell = IoBell {
            regs: regs.try_clone()?,
        };
        let ring = RingChannel::open(mapping.region(), side, bell)
            .map_err(|e: ChannelError| io::Error::other(format!("ring: {e}")))?;
        let ring = match &bulk_mapping {
            None => ring,
            Some(m) => ring
                .with_bulk(m.region(), found.info.bulk_size)
                .map_err(|e| io::Error::other(format!("bulk area: {e}")))?,
        };
        let mut cmd = [0u8; 2];
        config.read_exact_at(&mut cmd, 4)?;
        let mut ch = UioChannel {
            found,
            ring,
            uio,
            regs,
            config,
            command: u16::from_le_bytes(cmd),
            masked: false,
            interrupts: 0,
            ack_errors: 0,
            _mapping: mapping,
            _bulk_mapping: bulk_mapping,
        };
        ch.acknowledge()?;
        Ok(ch)
    }

    /// The descriptor to poll for interrupts (`None`: poll the ring on a timer).
    pub fn irq_fd(&self) -> Option<RawFd> {
        self.uio.as_ref().map(|f| f.as_raw_fd())
    }

    /// After the uio descriptor polled readable: takes the interrupt count, the pending
    /// event, and unmasks INTx.
    pub fn on_interrupt(&mut self) -> io::Result<()> {
        self.take_interrupt()?;
        self.rearm()
    }

    /// After the uio descriptor polled readable: takes the interrupt count only. INTx stays
    /// masked (the handler masked it) until [`UioChannel::rearm`]: while traffic flows, the
    /// agent polls the ring instead (no exits for the interrupt path).
    pub fn take_interrupt(&mut self) -> io::Result<()> {
        if let Some(uio) = &mut self.uio {
            let mut count = [0u8; 4];
            match uio.read(&mut count) {
                Ok(_) => {
                    self.interrupts += 1;
                    self.masked = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Before a sleep that waits for the interrupt: takes the pending event and unmasks
    /// INTx, if an interrupt masked it since.
    pub fn rearm(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.masked) {
            self.acknowledge()?;
        }
        Ok(())
    }

    /// Sleeps until the peer's event or `timeout`, for a program that serves this one
    /// channel (the agent's event loop waits on all of them at once): our waiting flag
    /// first, so no wake-up is lost. `Err` is news from the ring (a reset, which the ring has
    /// already reopened for, or a breach) for the caller's conversation. A failed `poll` is
    /// only an early wake-up: the caller looks at the ring again either way.
    pub fn wait_for_peer(&mut self, timeout: Duration) -> Result<(), ChannelError> {
        if self.rearm().is_err() {
            self.ack_errors += 1;
        }
        if self.ring.prepare_wait()? {
            self.ring.finish_wait();
            return Ok(());
        }
        let mut watch = self.irq_fd().map(|fd| sys::Watch {
            fd,
            readable: false,
        });
        match &mut watch {
            Some(w) => {
                let _ = sys::poll(std::slice::from_mut(w), Some(timeout));
            }
            None => std::thread::sleep(timeout.min(Duration::from_millis(2))),
        }
        self.ring.finish_wait();
        if watch.is_some_and(|w| w.readable) && self.take_interrupt().is_err() {
            self.ack_errors += 1;
        }
        Ok(())
    }

    /// Reads EVENTS (clearing the pending event, so INTx deasserts), then clears
    /// `INTX_DISABLE` (which the handler set) with a one-byte write of COMMAND's high byte,
    /// as the UIO documentation does it: no read first (a read and a two-byte write cost
    /// four VM exits, this two). That byte holds only `INTX_DISABLE` and bits that are
    /// zero on a channel device.
    fn acknowledge(&mut self) -> io::Result<()> {
        let mut events = [0u8; 4];
        self.regs
            .read_exact_at(&mut events, u64::from(reg::EVENTS))?;
        if self.uio.is_some() {
            let high = ((self.command & !INTX_DISABLE) >> 8) as u8;
            self.config.write_all_at(&[high], 5)?;
        }
        Ok(())
    }
}

impl Transport for UioChannel {
    fn try_send<T: serde::Serialize + ?Sized>(&mut self, msg: &T) -> Result<bool, ChannelError> {
        self.ring.try_send(msg)
    }

    fn try_recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, ChannelError> {
        self.ring.try_recv_with(f)
    }

    fn unconsumed(&self) -> u32 {
        self.ring.unconsumed()
    }

    fn try_send_batched<T: serde::Serialize + ?Sized>(
        &mut self,
        msg: &T,
    ) -> Result<bool, ChannelError> {
        self.ring.try_send_batched(msg)
    }

    fn flush(&mut self) {
        self.ring.flush();
    }

    fn bulk(&mut self) -> Option<&mut bulkhead_ring::Bulk> {
        self.ring.bulk()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysfs_values() {
        assert_eq!(parse_id("0xbd00\n"), Some(0xBD00));
        assert_eq!(parse_id("0x0001"), Some(1));
        assert_eq!(parse_id("nonsense"), None);
        assert_eq!(parse_dev("243:0\n"), Some((243, 0)));
        assert_eq!(parse_dev("243"), None);
    }

    #[test]
    fn scan_finds_channel_devices_by_id_and_capability() {
        let root = std::env::temp_dir().join(format!("agent-pci-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let dev = |addr: &str, vendor: &str, cap: Option<&InfoCap>| {
            let d = root.join(addr);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("vendor"), format!("{vendor}\n")).unwrap();
            fs::write(d.join("device"), "0x0001\n").unwrap();
            let mut config = vec![0u8; 256];
            if let Some(c) = cap {
                config[0x40..0x40 + InfoCap::LEN].copy_from_slice(&c.to_bytes());
            }
            fs::write(d.join("config"), config).unwrap();
        };
        let cap = InfoCap {
            side: 1,
            size: 65536,
            bulk_size: 1 << 20,
            name: bulkhead_abi::bounded::BoundedString::try_from("work.net").unwrap(),
        };
        dev("0000:00:02.0", "0xbd00", None);
        dev("0000:00:01.0", "0xbd00", Some(&cap));
        dev("0000:00:03.0", "0x1af4", Some(&cap));
        let (found, bad) = scan(&root);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].address, "0000:00:01.0");
        assert_eq!(found[0].info, cap);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, "0000:00:02.0");
        let _ = fs::remove_dir_all(&root);
        assert_eq!(scan(&root), (vec![], vec![]));
    }
}
