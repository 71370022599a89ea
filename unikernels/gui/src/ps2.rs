//! The PS/2 controller (i8042: data port 0x60, status and command port 0x64), which the
//! system description gives this qube (`io_ports = ["0x60", "0x64"]`). The firmware leaves
//! the keyboard on with scancode translation (set 1); this module turns the mouse (the
//! auxiliary port) on, keeps the controller's interrupts off, and polls: each byte goes to
//! the keyboard or the mouse decoder of `bulkhead-gui-compose`.

use bulkhead_gui_compose::keyboard::{Decoder, Key};
use bulkhead_gui_compose::mouse::{Motion, Packets};
use bulkhead_rt::Boot;
use bulkhead_rt::port::{IoPort, NotGranted};

/// Status bits.
const OUTPUT_FULL: u8 = 1 << 0;
const INPUT_FULL: u8 = 1 << 1;
const FROM_MOUSE: u8 = 1 << 5;
/// Controller commands.
const READ_CONFIG: u8 = 0x20;
const WRITE_CONFIG: u8 = 0x60;
const ENABLE_MOUSE_PORT: u8 = 0xA8;
const TO_MOUSE: u8 = 0xD4;
/// Configuration bits: keyboard and mouse interrupts (off: this qube polls), translation.
const CONFIG_IRQS: u8 = 0b11;
const CONFIG_TRANSLATE: u8 = 1 << 6;
/// Mouse commands.
const MOUSE_DEFAULTS: u8 = 0xF6;
const MOUSE_REPORT: u8 = 0xF4;
/// How many status reads a wait for the controller may take.
const PATIENCE: u32 = 100_000;
/// Most bytes taken per poll (a controller that never empties cannot hold the loop).
const BYTES_PER_POLL: usize = 256;

/// What one byte became.
pub enum Input {
    /// A key went down or up.
    Key(Key),
    /// The mouse moved or its buttons changed.
    Mouse(Motion),
}

/// The controller and the two decoders.
pub struct Ps2 {
    data: IoPort<u8>,
    status: IoPort<u8>,
    keyboard: Decoder,
    mouse: Packets,
}

impl Ps2 {
    /// Opens the controller (refused if the qube does not own both ports) and turns the
    /// mouse on.
    pub fn open(boot: &Boot) -> Result<Ps2, NotGranted> {
        let mut p = Ps2 {
            data: IoPort::new(boot, 0x60)?,
            status: IoPort::new(boot, 0x64)?,
            keyboard: Decoder::default(),
            mouse: Packets::default(),
        };
        p.drain();
        p.command(ENABLE_MOUSE_PORT);
        p.command(READ_CONFIG);
        let config = p.read_data().unwrap_or(CONFIG_TRANSLATE);
        p.command(WRITE_CONFIG);
        p.write_data((config & !CONFIG_IRQS) | CONFIG_TRANSLATE);
        for c in [MOUSE_DEFAULTS, MOUSE_REPORT] {
            p.command(TO_MOUSE);
            p.write_data(c);
            // The acknowledgement (0xFA).
            let _ = p.read_data();
        }
        p.drain();
        Ok(p)
    }

    /// Takes what the controller has, decoded.
    pub fn poll(&mut self, mut each: impl FnMut(Input, u8)) {
        for _ in 0..BYTES_PER_POLL {
            let s = self.status.read();
            if s & OUTPUT_FULL == 0 {
                return;
            }
            let byte = self.data.read();
            if s & FROM_MOUSE != 0 {
                if let Some(m) = self.mouse.feed(byte) {
                    each(Input::Mouse(m), self.keyboard.modifiers());
                }
            } else if let Some(k) = self.keyboard.feed(byte) {
                each(Input::Key(k), self.keyboard.modifiers());
            }
        }
    }

    fn drain(&mut self) {
        for _ in 0..BYTES_PER_POLL {
            if self.status.read() & OUTPUT_FULL == 0 {
                return;
            }
            let _ = self.data.read();
        }
    }

    fn wait_input_empty(&mut self) -> bool {
        (0..PATIENCE).any(|_| self.status.read() & INPUT_FULL == 0)
    }

    fn command(&mut self, c: u8) {
        if self.wait_input_empty() {
            self.status.write(c);
        }
    }

    fn write_data(&mut self, v: u8) {
        if self.wait_input_empty() {
            self.data.write(v);
        }
    }

    fn read_data(&mut self) -> Option<u8> {
        (0..PATIENCE)
            .any(|_| self.status.read() & OUTPUT_FULL != 0)
            .then(|| self.data.read())
    }
}
