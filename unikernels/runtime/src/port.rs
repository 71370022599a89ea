//! The I/O ports this qube owns (`io_ports` in the system description, listed by
//! [`Boot::io_ports`]), read and written through the `x86_64` crate's [`Port`].
//!
//! The hypervisor passes exactly those ports through: an IN or OUT on one reaches the
//! hardware without a VM exit, and one on any other port stops the qube. [`IoPort::new`]
//! refuses a port (or, for a 16- or 32-bit port, any of its bytes) the qube does not own, so
//! a program that asks first is told instead of stopped.

use crate::Boot;
use bulkhead_abi::io_ports::PortRange;
use core::fmt;
use core::marker::PhantomData;
use x86_64::instructions::port::{Port, PortRead, PortWrite};

/// The qube does not own every byte of the port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotGranted {
    /// The port.
    pub port: u16,
    /// Bytes of the access.
    pub width: u16,
}

impl fmt::Display for NotGranted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.width {
            1 => write!(f, "I/O port {:#x} is not this qube's", self.port),
            w => write!(
                f,
                "I/O ports {:#x}-{:#x} ({w} bytes) are not all this qube's",
                self.port,
                u32::from(self.port) + u32::from(w) - 1
            ),
        }
    }
}

/// A port of `T` (`u8`, `u16` or `u32`) the qube owns.
pub struct IoPort<T> {
    port: Port<T>,
    number: u16,
    _value: PhantomData<T>,
}

impl<T: PortRead + PortWrite> IoPort<T> {
    /// Port `number`, if the qube owns each byte an access of `T` touches.
    pub fn new(boot: &Boot, number: u16) -> Result<IoPort<T>, NotGranted> {
        let width = core::mem::size_of::<T>() as u16;
        if !PortRange::covers(boot.io_ports(), number, width) {
            return Err(NotGranted {
                port: number,
                width,
            });
        }
        Ok(IoPort {
            port: Port::new(number),
            number,
            _value: PhantomData,
        })
    }

    /// The port's number.
    pub fn number(&self) -> u16 {
        self.number
    }

    /// IN from the port.
    pub fn read(&mut self) -> T {
        // SAFETY: (1) the port is this qube's (checked in `new` against the boot info the
        // runtime checked at entry), so the hypervisor passes the access to the device
        // instead of stopping the qube; (2) IN touches no memory, and the ports no qube
        // may own (DMA controllers, PCI configuration) are refused by the system
        // description and the hypervisor, so no device behind an owned port can be made
        // to write this program's memory.
        unsafe { self.port.read() }
    }

    /// OUT to the port.
    pub fn write(&mut self, value: T) {
        // SAFETY: as for `read`: the port is this qube's, and OUT touches no memory.
        unsafe { self.port.write(value) }
    }
}

impl<T> fmt::Debug for IoPort<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IoPort({:#x})", self.number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::for_tests;

    #[test]
    fn only_owned_ports_are_handed_out() {
        let boot = for_tests(|b| {
            b.io_port_count = 2;
            b.io_ports[0] = PortRange::single(0x60);
            b.io_ports[1] = PortRange::single(0x64);
            b.io_ports[2] = PortRange::single(0x61); // past the count: not owned
        });
        assert_eq!(boot.io_ports().len(), 2);
        assert_eq!(IoPort::<u8>::new(&boot, 0x64).unwrap().number(), 0x64);
        assert!(IoPort::<u8>::new(&boot, 0x60).is_ok());
        let e = IoPort::<u8>::new(&boot, 0x61).unwrap_err();
        assert_eq!(
            e,
            NotGranted {
                port: 0x61,
                width: 1
            }
        );
        assert_eq!(e.to_string(), "I/O port 0x61 is not this qube's");
        let e = IoPort::<u16>::new(&boot, 0x60).unwrap_err();
        assert_eq!(
            e.to_string(),
            "I/O ports 0x60-0x61 (2 bytes) are not all this qube's"
        );
        assert!(IoPort::<u32>::new(&boot, 0x64).is_err());
        let none = for_tests(|_| {});
        assert!(none.io_ports().is_empty());
        assert!(IoPort::<u8>::new(&none, 0x60).is_err());
    }

    #[test]
    fn wide_ports_need_every_byte() {
        let boot = for_tests(|b| {
            b.io_port_count = 1;
            b.io_ports[0] = PortRange::new(0x2F8, 0x2FF).unwrap();
        });
        assert!(IoPort::<u32>::new(&boot, 0x2FC).is_ok());
        assert!(IoPort::<u32>::new(&boot, 0x2FD).is_err());
        assert!(IoPort::<u16>::new(&boot, 0x2FE).is_ok());
    }
}
