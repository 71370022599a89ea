//! A polled driver for Intel's e1000e family (feature `e1000e`): QEMU's `-device e1000e`
//! (82574L, `8086:10d3`) and its relatives. No unsafe code: registers go through
//! [`Mmio`] (BAR 0), descriptors and buffers through [`DmaRegion`].
//!
//! Set-up: memory decoding and bus mastering on, interrupts masked, a full reset, link up
//! forced (CTRL.SLU), the MAC read from receive address 0 (or the EEPROM), the multicast
//! table cleared, then one ring of [`RING_SIZE`] legacy descriptors each way with a
//! [`BUF_LEN`]-byte buffer per slot (receive: broadcast accepted, CRC stripped; transmit:
//! short frames padded, FCS inserted by the card). The card raises no interrupts (the
//! driver polls the descriptors' DD bits) until [`E1000e::enable_interrupts`]; then the
//! caller runs [`E1000e::acknowledge`] before each look at the rings. Everything the device writes back is checked
//! ([`ring::rx_verdict`]): a bad length or status drops that frame, never panics.

pub mod regs;
pub mod ring;

use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use crate::dma::{self, DmaRegion};
use crate::mmio::Mmio;
use crate::pci::{PciDevice, PciError};
use ring::{DESC_LEN, RxRing, RxVerdict, TxRing};

/// Intel's PCI vendor ID.
pub const VENDOR: u16 = 0x8086;
/// Device IDs of the family this driver takes: 82574L (`10d3`, QEMU's e1000e), 82583V
/// (`150c`), and the I217/I218/I219 parts of Intel's chipsets (I217-LM/V `153a`/`153b`,
/// I218-LM/V `155a`/`1559` and `15a0`..`15a3`, I219-LM/V `156f`/`1570`, `15b7`/`15b8`,
/// `15b9`). They share the registers and legacy descriptors used here; only `10d3` is
/// tested (in QEMU), the chipset parts may need PHY set-up this driver does not do.
pub const DEVICE_IDS: [u16; 15] = [
    0x10d3, 0x150c, 0x153a, 0x153b, 0x155a, 0x1559, 0x15a0, 0x15a1, 0x15a2, 0x15a3, 0x156f, 0x1570,
    0x15b7, 0x15b8, 0x15b9,
];
/// Descriptors per ring: as many as a network channel's ring, as for virtio-net.
pub const RING_SIZE: usize = 128;
/// Bytes per receive and transmit buffer (RCTL.BSIZE 00).
pub const BUF_LEN: usize = 2048;
/// Largest frame [`E1000e::send`] takes (Ethernet II without FCS).
pub const MAX_FRAME: usize = bulkhead_abi::proto::MAX_FRAME;
/// How long the reset may take.
const RESET_TIMEOUT: Duration = Duration::from_millis(100);
/// How long an EEPROM read may take.
const EEPROM_TIMEOUT: Duration = Duration::from_millis(10);
/// How long to wait for the link at start (it is not required: frames wait for it).
const LINK_WAIT: Duration = Duration::from_millis(500);

/// Why the card could not be brought up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// BAR 0 (the registers) is not mapped into this qube.
    NoRegisters,
    /// Turning on memory decoding and bus mastering failed.
    Config(PciError),
    /// The reset bit did not clear.
    ResetTimeout,
    /// No MAC address in receive address 0 nor in the EEPROM.
    NoMac,
    /// The heap could not give the rings and buffers.
    OutOfMemory,
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::NoRegisters => f.write_str("e1000e: BAR 0 (registers) is not mapped"),
            InitError::Config(e) => write!(f, "e1000e: PCI command register: {e}"),
            InitError::ResetTimeout => {
                write!(f, "e1000e: reset did not finish in {RESET_TIMEOUT:?}")
            }
            InitError::NoMac => f.write_str("e1000e: no MAC address (receive address or EEPROM)"),
            InitError::OutOfMemory => f.write_str("e1000e: out of memory for rings and buffers"),
        }
    }
}

/// Why a frame was not sent or received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    /// Every transmit slot is in flight.
    Busy,
    /// The frame is longer than [`MAX_FRAME`].
    TooLong(usize),
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Busy => f.write_str("every transmit slot is in flight"),
            NetError::TooLong(n) => write!(f, "frame of {n} bytes, at most {MAX_FRAME}"),
        }
    }
}

/// Counters of an [`E1000e`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames received.
    pub rx_frames: u64,
    /// Frames handed to the card.
    pub tx_frames: u64,
    /// Sends refused because every slot was in flight.
    pub tx_busy: u64,
    /// Receive descriptors dropped as bad (error bits, bad length, no end of packet).
    pub rx_errors: u64,
}

/// An e1000e card, polled.
pub struct E1000e {
    regs: Mmio,
    mac: [u8; 6],
    rx_desc: DmaRegion,
    rx_bufs: DmaRegion,
    rx: RxRing,
    tx_desc: DmaRegion,
    tx_bufs: DmaRegion,
    tx: TxRing,
    /// Where received frames are copied out of DMA memory before the caller sees them.
    scratch: Vec<u8>,
    /// Counters.
    pub stats: Stats,
}

/// PCI command register: memory space and bus master enables.
const PCI_COMMAND: u16 = 0x04;
const COMMAND_MEMORY: u32 = 1 << 1;
const COMMAND_BUS_MASTER: u32 = 1 << 2;

/// Polls `done` every 1 ms until it says true or `limit` passed.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = crate::now_ns().saturating_add(limit.as_nanos() as u64);
    loop {
        if done() {
            return true;
        }
        if crate::now_ns() >= end {
            return false;
        }
        crate::sleep(Duration::from_millis(1));
    }
}

impl E1000e {
    /// Brings up `device` (see the module doc).
    pub fn new(device: &PciDevice) -> Result<E1000e, InitError> {
        let regs = Mmio::of_bar(device, 0).ok_or(InitError::NoRegisters)?;
        // Only the command half of the word: the status half's bits clear when written 1.
        let word = device.config_read(PCI_COMMAND).map_err(InitError::Config)?;
        device
            .config_write(
                PCI_COMMAND,
                (word & 0xffff) | COMMAND_MEMORY | COMMAND_BUS_MASTER,
            )
            .map_err(InitError::Config)?;
        let r = |off| regs.read32(off).unwrap_or(0);
        let w = |off, v| {
            regs.write32(off, v);
        };
        // Quiet, then reset, then quiet again (the reset restores the defaults).
        w(regs::IMC, u32::MAX);
        w(regs::RCTL, 0);
        w(regs::TCTL, 0);
        w(regs::CTRL, r(regs::CTRL) | regs::CTRL_RST);
        crate::sleep(Duration::from_millis(1));
        if !wait_until(RESET_TIMEOUT, || r(regs::CTRL) & regs::CTRL_RST == 0) {
            return Err(InitError::ResetTimeout);
        }
        w(regs::IMC, u32::MAX);
        let _ = r(regs::ICR);
        w(regs::CTRL, r(regs::CTRL) | regs::CTRL_SLU);

        let mac = read_mac(&regs).ok_or(InitError::NoMac)?;
        let [a, b, c, d, e, f] = mac;
        w(regs::RAL0, u32::from_le_bytes([a, b, c, d]));
        w(
            regs::RAH0,
            u32::from(u16::from_le_bytes([e, f])) | regs::RAH_AV,
        );
        for i in 0..regs::MTA_WORDS {
            w(regs::MTA + 4 * i, 0);
        }

        let offset = device.dma_offset();
        let ring_bytes = RING_SIZE * DESC_LEN;
        let region = |len| DmaRegion::new(len, offset).ok_or(InitError::OutOfMemory);
        let mut card = E1000e {
            regs,
            mac,
            rx_desc: region(ring_bytes)?,
            rx_bufs: region(RING_SIZE * BUF_LEN)?,
            rx: RxRing::new(RING_SIZE),
            tx_desc: region(ring_bytes)?,
            tx_bufs: region(RING_SIZE * BUF_LEN)?,
            tx: TxRing::new(RING_SIZE),
            scratch: alloc::vec![0; BUF_LEN],
            stats: Stats::default(),
        };
        for slot in 0..RING_SIZE {
            card.post_rx(slot);
        }
        dma::barrier();
        let split = |bus: u64| (bus as u32, (bus >> 32) as u32);
        let (lo, hi) = split(card.rx_desc.bus_address(0));
        w(regs::RDBAL, lo);
        w(regs::RDBAH, hi);
        w(regs::RDLEN, ring_bytes as u32);
        w(regs::RDH, 0);
        w(regs::RDT, card.rx.initial_tail() as u32);
        let (lo, hi) = split(card.tx_desc.bus_address(0));
        w(regs::TDBAL, lo);
        w(regs::TDBAH, hi);
        w(regs::TDLEN, ring_bytes as u32);
        w(regs::TDH, 0);
        w(regs::TDT, 0);
        w(regs::TIPG, regs::TIPG_DEFAULT);
        w(
            regs::RCTL,
            regs::RCTL_EN | regs::RCTL_BAM | regs::RCTL_SECRC,
        );
        w(
            regs::TCTL,
            regs::TCTL_EN | regs::TCTL_PSP | regs::TCTL_CT | regs::TCTL_COLD,
        );
        if !wait_until(LINK_WAIT, || r(regs::STATUS) & regs::STATUS_LU != 0) {
            crate::warn!("e1000e: no link after {LINK_WAIT:?}; going on (frames wait for it)");
        }
        Ok(card)
    }

    /// The card's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Unmasks the causes in [`regs::INT_CAUSES`] (frame received, receive ring low or
    /// overrun, transmit descriptor done, link change) in IMS. Call it after the hypervisor
    /// programmed the card's MSI ([`PciDevice::request_interrupts`]): the card then sends a
    /// message for each new cause, and unmasking sends one at once for a cause already
    /// pending, so the order loses nothing.
    pub fn enable_interrupts(&mut self) {
        self.regs.write32(regs::IMS, regs::INT_CAUSES);
    }

    /// Acknowledges the pending causes and returns them: reading ICR clears it (with MSI or
    /// legacy interrupts); the bits read are also written back (write 1 to clear), which
    /// clears them under MSI-X too, where a read alone does not. A cause left set raises no
    /// new message, so call this before draining the rings: a frame that arrives after it
    /// sets a cause anew and interrupts again.
    pub fn acknowledge(&mut self) -> u32 {
        let causes = self.regs.read32(regs::ICR).unwrap_or(0);
        if causes != 0 {
            self.regs.write32(regs::ICR, causes);
        }
        causes
    }

    /// Whether the link is up (STATUS.LU).
    pub fn link_up(&self) -> bool {
        self.regs.read32(regs::STATUS).unwrap_or(0) & regs::STATUS_LU != 0
    }

    /// Gives receive descriptor `slot` its buffer and clears its write-back fields.
    fn post_rx(&mut self, slot: usize) {
        let d = slot * DESC_LEN;
        self.rx_desc
            .write64(d, self.rx_bufs.bus_address(slot * BUF_LEN));
        // length, checksum, status, errors, special: all zero.
        self.rx_desc.write64(d + 8, 0);
    }

    /// Takes one received frame, if the card has one, and calls `f` on it; its slot goes
    /// back to the card afterwards. Frames the card marked bad (or described impossibly)
    /// are dropped and counted in [`Stats::rx_errors`]; the next good one is returned (at
    /// most one ring's worth is looked at per call, so a card that keeps writing bad
    /// descriptors cannot hold the qube here).
    pub fn receive<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, NetError> {
        for _ in 0..RING_SIZE {
            let slot = self.rx.next();
            let d = slot * DESC_LEN;
            let status = self.rx_desc.read8(d + ring::RX_STATUS).unwrap_or(0);
            if status & ring::STATUS_DD == 0 {
                return Ok(None);
            }
            // The status was read before the rest of the write-back and the buffer.
            dma::barrier();
            let errors = self.rx_desc.read8(d + ring::RX_ERRORS).unwrap_or(0xff);
            let length = self.rx_desc.read16(d + ring::RX_LENGTH).unwrap_or(0);
            let verdict = ring::rx_verdict(status, errors, length, BUF_LEN);
            let got = match verdict {
                RxVerdict::Frame(len) => {
                    let frame = &mut self.scratch[..len];
                    self.rx_bufs.copy_out(slot * BUF_LEN, frame).then_some(len)
                }
                RxVerdict::Bad | RxVerdict::Pending => None,
            };
            self.post_rx(slot);
            dma::barrier();
            let tail = self.rx.advance();
            self.regs.write32(regs::RDT, tail as u32);
            match got {
                Some(len) => {
                    self.stats.rx_frames += 1;
                    return Ok(Some(f(&self.scratch[..len])));
                }
                None => self.stats.rx_errors += 1,
            }
        }
        Ok(None)
    }

    /// Takes back the transmit slots the card has finished; returns how many.
    pub fn reclaim_tx(&mut self) -> usize {
        let mut n = 0;
        while let Some(slot) = self.tx.oldest() {
            let status = self
                .tx_desc
                .read8(slot * DESC_LEN + ring::TX_STATUS)
                .unwrap_or(0);
            if status & ring::STATUS_DD == 0 {
                break;
            }
            self.tx.reclaim();
            n += 1;
        }
        n
    }

    /// True when [`E1000e::send`] would find a free transmit slot (after taking back what
    /// the card has finished with).
    pub fn can_send(&mut self) -> bool {
        self.reclaim_tx();
        self.tx.has_room()
    }

    /// Frames handed to the card and not yet reported sent.
    pub fn tx_in_flight(&self) -> usize {
        self.tx.in_flight()
    }

    /// Queues `frame` for sending and returns at once ([`NetError::Busy`] when every slot
    /// is in flight).
    pub fn send(&mut self, frame: &[u8]) -> Result<(), NetError> {
        if frame.len() > MAX_FRAME || frame.len() > BUF_LEN {
            return Err(NetError::TooLong(frame.len()));
        }
        self.reclaim_tx();
        let Some(slot) = self.tx.free_slot() else {
            self.stats.tx_busy += 1;
            return Err(NetError::Busy);
        };
        let buf = slot * BUF_LEN;
        let d = slot * DESC_LEN;
        self.tx_bufs.copy_in(buf, frame);
        self.tx_desc.write64(d, self.tx_bufs.bus_address(buf));
        self.tx_desc.write64(d + 8, 0);
        self.tx_desc
            .write16(d + ring::TX_LENGTH, frame.len() as u16);
        self.tx_desc.write8(
            d + ring::TX_CMD,
            ring::CMD_EOP | ring::CMD_IFCS | ring::CMD_RS,
        );
        dma::barrier();
        let tail = self.tx.push();
        self.regs.write32(regs::TDT, tail as u32);
        self.stats.tx_frames += 1;
        Ok(())
    }
}

/// The MAC: receive address 0 if the card loaded a valid one (it does from its EEPROM at
/// reset), else words 0-2 of the EEPROM.
fn read_mac(regs: &Mmio) -> Option<[u8; 6]> {
    let ral = regs.read32(regs::RAL0)?;
    let rah = regs.read32(regs::RAH0)?;
    let [a, b, c, d] = ral.to_le_bytes();
    let [e, f, _, _] = rah.to_le_bytes();
    let mac = [a, b, c, d, e, f];
    if rah & regs::RAH_AV != 0 && usable_mac(mac) {
        return Some(mac);
    }
    let mut words = [0u16; 3];
    for (i, w) in words.iter_mut().enumerate() {
        *w = read_eeprom(regs, i as u32)?;
    }
    let [a, b] = words[0].to_le_bytes();
    let [c, d] = words[1].to_le_bytes();
    let [e, f] = words[2].to_le_bytes();
    let mac = [a, b, c, d, e, f];
    usable_mac(mac).then_some(mac)
}

/// Not all zeros, not all ones, not multicast.
fn usable_mac(mac: [u8; 6]) -> bool {
    mac != [0; 6] && mac != [0xff; 6] && mac[0] & 1 == 0
}

/// One 16-bit word of the EEPROM through EERD.
fn read_eeprom(regs: &Mmio, word: u32) -> Option<u16> {
    regs.write32(regs::EERD, word << regs::EERD_ADDR_SHIFT | regs::EERD_START);
    let mut value = None;
    wait_until(EEPROM_TIMEOUT, || {
        let v = regs.read32(regs::EERD).unwrap_or(0);
        if v & regs::EERD_DONE != 0 {
            value = Some((v >> regs::EERD_DATA_SHIFT) as u16);
        }
        value.is_some()
    });
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_checked() {
        assert!(usable_mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert!(!usable_mac([0; 6]));
        assert!(!usable_mac([0xff; 6]));
        assert!(!usable_mac([1, 0, 0, 0, 0, 1]), "multicast");
    }

    #[test]
    fn the_family_includes_qemus_card_once() {
        assert_eq!(DEVICE_IDS.iter().filter(|&&d| d == 0x10d3).count(), 1);
        for (i, a) in DEVICE_IDS.iter().enumerate() {
            assert!(!DEVICE_IDS[i + 1..].contains(a), "{a:#x} listed twice");
        }
        assert_eq!(
            RING_SIZE * ring::DESC_LEN % 128,
            0,
            "ring length multiple of 128"
        );
    }
}
