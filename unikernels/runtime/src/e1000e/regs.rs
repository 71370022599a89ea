//! The registers of the e1000e family (82574 datasheet), offsets into BAR 0, and the bits
//! this driver uses.

/// Device control.
pub const CTRL: u64 = 0x0000;
/// CTRL: set link up.
pub const CTRL_SLU: u32 = 1 << 6;
/// CTRL: full reset of the MAC (self-clearing).
pub const CTRL_RST: u32 = 1 << 26;
/// Device status.
pub const STATUS: u64 = 0x0008;
/// STATUS: link up.
pub const STATUS_LU: u32 = 1 << 1;
/// EEPROM read.
pub const EERD: u64 = 0x0014;
/// EERD: start a read.
pub const EERD_START: u32 = 1 << 0;
/// EERD: the read is done.
pub const EERD_DONE: u32 = 1 << 1;
/// EERD: where the word address goes.
pub const EERD_ADDR_SHIFT: u32 = 2;
/// EERD: where the data comes back.
pub const EERD_DATA_SHIFT: u32 = 16;
/// Interrupt cause read (clears on read).
pub const ICR: u64 = 0x00C0;
/// Interrupt mask set/read: a cause whose bit is set here raises an interrupt.
pub const IMS: u64 = 0x00D0;
/// Interrupt mask clear.
pub const IMC: u64 = 0x00D8;
/// ICR/IMS: transmit descriptor written back (a descriptor with RS is done).
pub const INT_TXDW: u32 = 1 << 0;
/// ICR/IMS: link status change.
pub const INT_LSC: u32 = 1 << 2;
/// ICR/IMS: receive descriptors below the minimum threshold (RCTL.RDMTS; half the ring).
pub const INT_RXDMT0: u32 = 1 << 4;
/// ICR/IMS: receiver overrun (no free descriptor for a frame).
pub const INT_RXO: u32 = 1 << 6;
/// ICR/IMS: receive timer (a frame was written back; RDTR 0: at once).
pub const INT_RXT0: u32 = 1 << 7;
/// The causes [`super::E1000e::enable_interrupts`] turns on.
pub const INT_CAUSES: u32 = INT_TXDW | INT_LSC | INT_RXDMT0 | INT_RXO | INT_RXT0;
/// Receive control.
pub const RCTL: u64 = 0x0100;
/// RCTL: receiver enable.
pub const RCTL_EN: u32 = 1 << 1;
/// RCTL: accept broadcast.
pub const RCTL_BAM: u32 = 1 << 15;
/// RCTL: strip the Ethernet CRC. (BSIZE bits 16-17 left 00: 2048-byte buffers.)
pub const RCTL_SECRC: u32 = 1 << 26;
/// Transmit control.
pub const TCTL: u64 = 0x0400;
/// TCTL: transmitter enable.
pub const TCTL_EN: u32 = 1 << 1;
/// TCTL: pad short packets.
pub const TCTL_PSP: u32 = 1 << 3;
/// TCTL: collision threshold 15 (bits 4-11), the datasheet's recommended value.
pub const TCTL_CT: u32 = 0x0F << 4;
/// TCTL: collision distance 63 (bits 12-21), for full duplex.
pub const TCTL_COLD: u32 = 0x3F << 12;
/// Transmit inter-packet gap.
pub const TIPG: u64 = 0x0410;
/// TIPG: IPGT 8, IPGR1 8, IPGR2 6 (the datasheet's values for copper).
pub const TIPG_DEFAULT: u32 = 8 | 8 << 10 | 6 << 20;
/// Receive ring: base low, base high, length in bytes, head, tail.
pub const RDBAL: u64 = 0x2800;
/// Receive ring base, high half.
pub const RDBAH: u64 = 0x2804;
/// Receive ring length in bytes (a multiple of 128).
pub const RDLEN: u64 = 0x2808;
/// Receive head (the device's).
pub const RDH: u64 = 0x2810;
/// Receive tail (the driver's).
pub const RDT: u64 = 0x2818;
/// Transmit ring base, low half.
pub const TDBAL: u64 = 0x3800;
/// Transmit ring base, high half.
pub const TDBAH: u64 = 0x3804;
/// Transmit ring length in bytes (a multiple of 128).
pub const TDLEN: u64 = 0x3808;
/// Transmit head (the device's).
pub const TDH: u64 = 0x3810;
/// Transmit tail (the driver's).
pub const TDT: u64 = 0x3818;
/// Multicast table array: 128 words from here.
pub const MTA: u64 = 0x5200;
/// Words of the multicast table.
pub const MTA_WORDS: u64 = 32;
/// Receive address 0, low four bytes of the MAC.
pub const RAL0: u64 = 0x5400;
/// Receive address 0, high two bytes of the MAC and the valid bit.
pub const RAH0: u64 = 0x5404;
/// RAH: the address is valid.
pub const RAH_AV: u32 = 1 << 31;
