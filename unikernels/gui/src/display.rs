//! The display: QEMU's `bochs-display` (PCI 1234:1111), assigned to this qube like any PCI
//! device. BAR0 is the framebuffer, BAR2 holds the mode registers (the Bochs "DISPI"
//! interface, 16-bit registers from offset 0x500). The qube sets a 32-bit mode and copies
//! the parts of its back buffer that changed into the framebuffer.
//!
//! Without that device (a real machine), the display is the firmware's framebuffer
//! (`framebuffer = true` in the system description: whatever mode UEFI or GRUB left, in the
//! boot info): no mode is set, the desktop takes the size it has, and rows are `pitch`
//! bytes apart, which may be more than `width * 4`.

use bulkhead_gui_compose::canvas::Canvas;
use bulkhead_gui_compose::geom::Rect;
use bulkhead_rt::Boot;
use bulkhead_rt::mmio::Mmio;
use bulkhead_rt::pci::PciDevice;
use core::fmt;

/// PCI IDs of QEMU's bochs-display (and of `-vga std`, which has the same registers).
const VENDOR: u16 = 0x1234;
const DEVICE: u16 = 0x1111;
/// Where the DISPI registers start in BAR2.
const DISPI: u64 = 0x500;
/// DISPI register indices.
mod reg {
    pub const ID: u64 = 0;
    pub const XRES: u64 = 1;
    pub const YRES: u64 = 2;
    pub const BPP: u64 = 3;
    pub const ENABLE: u64 = 4;
    pub const VIRT_WIDTH: u64 = 6;
    pub const VIRT_HEIGHT: u64 = 7;
    pub const X_OFFSET: u64 = 8;
    pub const Y_OFFSET: u64 = 9;
}
/// ENABLE bits: the mode is on, with the linear framebuffer.
const ENABLED_LFB: u16 = 0x01 | 0x40;
/// The oldest DISPI version with 32-bit modes.
const MIN_ID: u16 = 0xB0C2;
/// PCI command register: memory space decoding.
const COMMAND_MEMORY: u32 = 1 << 1;

/// Largest firmware mode the desktop takes (its back buffer lives in this qube's memory).
const MAX_SIDE: u32 = 4096;

/// Why there is no display.
#[derive(Debug)]
pub enum DisplayError {
    /// No bochs-display among the assigned devices and no firmware framebuffer.
    NoDevice,
    /// The firmware's mode is larger than [`MAX_SIDE`] on a side.
    TooLarge(u32, u32),
    /// BAR0 or BAR2 is not mapped.
    NoBars,
    /// The DISPI interface reports an unknown version.
    Version(u16),
    /// The framebuffer is too small for the mode.
    TooSmall(u64),
    /// The device did not take the mode.
    ModeRefused(u16, u16),
    /// Configuration space refused.
    Config,
}

impl fmt::Display for DisplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisplayError::NoDevice => write!(
                f,
                "no bochs-display (PCI 1234:1111) among the assigned devices and no firmware \
                 framebuffer: give the device to this qube with devices = \
                 [\"pci-id:1234:1111\"], or the firmware's framebuffer with framebuffer = true"
            ),
            DisplayError::TooLarge(w, h) => write!(
                f,
                "the firmware's framebuffer is {w}x{h}, at most {MAX_SIDE}x{MAX_SIDE} is drawn"
            ),
            DisplayError::NoBars => write!(f, "the display's BAR0 or BAR2 is not mapped"),
            DisplayError::Version(v) => {
                write!(f, "DISPI version {v:#x}, at least {MIN_ID:#x} needed")
            }
            DisplayError::TooSmall(n) => write!(f, "a framebuffer of {n} bytes is too small"),
            DisplayError::ModeRefused(w, h) => {
                write!(f, "the device reports {w}x{h} after the mode was set")
            }
            DisplayError::Config => write!(f, "configuration space access refused"),
        }
    }
}

/// The display, in a 32-bit mode.
pub struct Display {
    fb: Mmio,
    width: u32,
    height: u32,
    /// Bytes from one row to the next.
    pitch: u32,
    /// It is the firmware's framebuffer, not the bochs-display.
    firmware: bool,
}

impl Display {
    /// The bochs-display at `width × height` (32 bits per pixel), or without one the
    /// firmware's framebuffer at its own mode.
    pub fn open(boot: &Boot, width: u16, height: u16) -> Result<Display, DisplayError> {
        match Display::open_bochs(boot, width, height) {
            Err(DisplayError::NoDevice) => Display::open_firmware(boot),
            other => other,
        }
    }

    /// The firmware's framebuffer, as the boot info describes it.
    fn open_firmware(boot: &Boot) -> Result<Display, DisplayError> {
        let info = boot.framebuffer().ok_or(DisplayError::NoDevice)?;
        let fb = Mmio::of_framebuffer(boot).ok_or(DisplayError::NoDevice)?;
        if info.width > MAX_SIDE || info.height > MAX_SIDE {
            return Err(DisplayError::TooLarge(info.width, info.height));
        }
        Ok(Display {
            fb,
            width: info.width,
            height: info.height,
            pitch: info.pitch,
            firmware: true,
        })
    }

    /// Finds the bochs-display and sets `width × height` at 32 bits per pixel.
    fn open_bochs(boot: &Boot, width: u16, height: u16) -> Result<Display, DisplayError> {
        let dev = PciDevice::find(boot, VENDOR, &[DEVICE]).ok_or(DisplayError::NoDevice)?;
        let command = dev.config_read(4).map_err(|_| DisplayError::Config)?;
        dev.config_write(4, command | COMMAND_MEMORY)
            .map_err(|_| DisplayError::Config)?;
        let (fb, regs) = match (Mmio::of_bar(&dev, 0), Mmio::of_bar(&dev, 2)) {
            (Some(fb), Some(regs)) => (fb, regs),
            _ => return Err(DisplayError::NoBars),
        };
        let read = |r: u64| regs.read16(DISPI + 2 * r).unwrap_or(0);
        let write = |r: u64, v: u16| regs.write16(DISPI + 2 * r, v);
        let id = read(reg::ID);
        if !(MIN_ID..=0xB0CF).contains(&id) {
            return Err(DisplayError::Version(id));
        }
        let bytes = u64::from(width) * u64::from(height) * 4;
        if fb.len() < bytes {
            return Err(DisplayError::TooSmall(fb.len()));
        }
        write(reg::ENABLE, 0);
        for (r, v) in [
            (reg::XRES, width),
            (reg::YRES, height),
            (reg::BPP, 32),
            (reg::VIRT_WIDTH, width),
            (reg::VIRT_HEIGHT, height),
            (reg::X_OFFSET, 0),
            (reg::Y_OFFSET, 0),
        ] {
            write(r, v);
        }
        write(reg::ENABLE, ENABLED_LFB);
        let (w, h) = (read(reg::XRES), read(reg::YRES));
        if (w, h) != (width, height) {
            return Err(DisplayError::ModeRefused(w, h));
        }
        Ok(Display {
            fb,
            width: u32::from(width),
            height: u32::from(height),
            pitch: u32::from(width) * 4,
            firmware: false,
        })
    }

    /// What the screen is, for the log.
    pub fn source(&self) -> &'static str {
        match self.firmware {
            true => "the firmware framebuffer",
            false => "bochs-display",
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Copies `r` of `canvas` (the same size as the screen) to the screen.
    pub fn present(&self, canvas: &Canvas, r: Rect) {
        let r = r.intersect(&canvas.bounds());
        for y in r.y..r.bottom() {
            let offset = y as u64 * u64::from(self.pitch) + r.x as u64 * 4;
            self.fb.write_words(offset, canvas.row(y, r.x, r.w));
        }
    }
}
