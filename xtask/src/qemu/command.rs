//! The QEMU command line (pure: built from [`BootOptions`] so tests can check it).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// I/O port of QEMU's `isa-debug-exit` device: writing `code` there ends QEMU with status
/// `code * 2 + 1`.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
/// Where QEMU shows the screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Display {
    /// Nowhere (`-display none`): tests and benchmarks, which look through QMP.
    Headless,
    /// QEMU's own window (its default display, where the host has one).
    Window,
    /// A VNC server at this address (`-display vnc=127.0.0.1:0` is port 5900).
    Vnc(String),
}

/// QEMU's Bochs display (PCI `1234:1111`): a linear framebuffer and no VGA, the GUI qube's
/// screen.
pub const BOCHS_DISPLAY: &str = "bochs-display";
/// The QEMU id given to [`BootOptions::display_device`] (`-device ...,id=screen`).
pub const SCREEN_ID: &str = "screen";

/// What QEMU boots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Media {
    /// The hypervisor ELF through PVH (`-kernel`), the bundle as its module (`-initrd`).
    Direct {
        /// The hypervisor ELF.
        kernel: PathBuf,
        /// The boot bundle.
        bundle: PathBuf,
    },
    /// A GRUB ISO (`-cdrom`), booted by SeaBIOS then GRUB through multiboot2.
    Iso(PathBuf),
}

/// Where the serial console goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serial {
    /// A person at a terminal: serial and QEMU monitor multiplexed on stdio
    /// (`-serial mon:stdio`), Ctrl-A X quits, Ctrl-A C toggles the monitor.
    Interactive,
    /// No person: serial on stdout only, no monitor, stdin closed.
    Captured,
}

impl Serial {
    /// Interactive when stdin is a terminal.
    pub fn detect() -> Serial {
        use std::io::IsTerminal;
        if std::io::stdin().is_terminal() {
            Serial::Interactive
        } else {
            Serial::Captured
        }
    }
}

/// The network card QEMU gives the machine.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Nic {
    /// Extra `-netdev user` options (e.g. `hostfwd=...`), comma-separated.
    pub user_options: String,
    /// Which card.
    pub model: NicModel,
}

/// The kinds of network card sys-net drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NicModel {
    /// virtio-net, modern only (`1af4:1041`).
    #[default]
    VirtioNet,
    /// Intel's 82574L (`-device e1000e`, `8086:10d3`).
    E1000e,
}

impl NicModel {
    /// The `-device` argument for a card on netdev `uplink`. Behind an IOMMU, a virtio card
    /// needs `iommu_platform=on` (otherwise QEMU's virtio devices use addresses as physical
    /// and bypass it); an emulated PCI card such as the e1000e always goes through it.
    pub fn device(self, iommu: bool) -> &'static str {
        match (self, iommu) {
            (NicModel::VirtioNet, true) => {
                "virtio-net-pci,netdev=uplink,disable-legacy=on,iommu_platform=on,ats=off"
            }
            (NicModel::VirtioNet, false) => "virtio-net-pci,netdev=uplink,disable-legacy=on",
            (NicModel::E1000e, _) => "e1000e,netdev=uplink",
        }
    }
}

/// Everything that decides how QEMU runs.
#[derive(Clone, Debug)]
pub struct BootOptions {
    /// What to boot.
    pub media: Media,
    /// `-cpu` model: `max` (SVM + NPT + VGIF), `EPYC` (NPT only), ...
    pub cpu: String,
    /// Guest RAM in MiB.
    pub ram_mib: u32,
    /// Number of CPUs (`-smp`), at least 1.
    pub smp: u32,
    /// Serial console mode.
    pub serial: Serial,
    /// An Intel IOMMU with interrupt remapping (`-device intel-iommu,intremap=on`: a DMAR
    /// table, VT-d 1.0 at 0xfed90000).
    pub iommu: bool,
    /// A network card (virtio-net by default, see [`NicModel`]) on QEMU's user network, which gives
    /// DHCP (10.0.2.15), a gateway 10.0.2.2 that reaches the host's loopback, and DNS at
    /// 10.0.2.3; `None` for no network card at all.
    pub nic: Option<Nic>,
    /// A raw disk image given to the machine as a virtio-blk disk (modern only,
    /// `1af4:1042`, through the IOMMU when there is one): the storage qube's disk. `None`:
    /// no disk.
    pub disk: Option<PathBuf>,
    /// A display device (e.g. [`BOCHS_DISPLAY`]) with id [`SCREEN_ID`], the machine's only
    /// screen: the default VGA is then left out (`-vga none`). QEMU stays headless
    /// (`-display none`); QMP's `screendump` shows what the device shows. `None`: the
    /// default VGA, which nothing draws on.
    pub display_device: Option<String>,
    /// Where QEMU shows the screen.
    pub display: Display,
    /// A QMP socket (`-qmp unix:PATH,server=on,wait=off`) that [`super::qmp::Qmp`] connects
    /// to: screenshots, keys and pointer through the machine's PS/2 keyboard and mouse.
    pub qmp_socket: Option<PathBuf>,
    /// A second serial port, COM2, served on this Unix socket (`-serial
    /// unix:PATH,server=on,wait=off`): the admin qube's host console (`cargo xtask qvm`).
    pub host_console: Option<PathBuf>,
    /// Extra arguments appended verbatim (`--qemu-arg`).
    pub extra_args: Vec<String>,
    /// Kill QEMU after this long (`None`: never).
    pub timeout: Option<Duration>,
    /// Copy QEMU's output to our stdout.
    pub echo: bool,
    /// Also write every console line, escapes removed, to this file.
    pub serial_log: Option<PathBuf>,
    /// The QEMU binary.
    pub qemu: String,
}

impl BootOptions {
    /// Defaults for tests and scripts: `-cpu max`, one CPU, captured serial, echoed, 120 s
    /// timeout.
    pub fn new(media: Media, ram_mib: u32) -> BootOptions {
        BootOptions {
            media,
            cpu: "max".to_string(),
            ram_mib,
            smp: 1,
            serial: Serial::Captured,
            iommu: true,
            nic: Some(Nic::default()),
            disk: None,
            display_device: None,
            display: Display::Headless,
            qmp_socket: None,
            host_console: None,
            extra_args: Vec::new(),
            timeout: Some(Duration::from_secs(120)),
            echo: true,
            serial_log: None,
            qemu: QEMU.to_string(),
        }
    }

    /// The arguments after the QEMU binary.
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
        push(&["-machine", "q35", "-accel", "tcg", "-cpu", &self.cpu]);
        let smp = self.smp.max(1).to_string();
        push(&["-m", &self.ram_mib.to_string(), "-smp", &smp]);
        // The IOMMU must come before the devices it translates.
        if self.iommu {
            push(&["-device", "intel-iommu,intremap=on"]);
        }
        match &self.nic {
            Some(nic) => {
                let mut netdev = "user,id=uplink".to_string();
                if !nic.user_options.is_empty() {
                    netdev.push(',');
                    netdev.push_str(&nic.user_options);
                }
                push(&["-netdev", &netdev]);
                push(&["-device", nic.model.device(self.iommu)]);
            }
            None => push(&["-nic", "none"]),
        }
        if let Some(device) = &self.display_device {
            push(&[
                "-vga",
                "none",
                "-device",
                &format!("{device},id={SCREEN_ID}"),
            ]);
        }
        if let Some(disk) = &self.disk {
            args.extend(disk_args(disk, self.iommu));
        }
        match &self.media {
            Media::Direct { kernel, bundle } => {
                args.push("-kernel".into());
                args.push(kernel.into());
                args.push("-initrd".into());
                args.push(bundle.into());
            }
            Media::Iso(iso) => {
                args.push("-cdrom".into());
                args.push(iso.into());
                args.push("-boot".into());
                args.push("d".into());
            }
        }
        let exit = format!("isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04");
        match &self.display {
            Display::Headless => args.extend(["-display", "none"].map(OsString::from)),
            Display::Window => {}
            Display::Vnc(at) => args.extend(["-display".into(), format!("vnc={at}").into()]),
        }
        args.extend(["-no-reboot", "-device", &exit].map(OsString::from));
        match self.serial {
            Serial::Interactive => args.extend(["-serial", "mon:stdio"].map(OsString::from)),
            Serial::Captured => {
                args.extend(["-serial", "stdio", "-monitor", "none"].map(OsString::from))
            }
        }
        // QEMU's option syntax: a comma inside a value is written twice.
        let server = |socket: &PathBuf| {
            let path = socket.to_string_lossy().replace(',', ",,");
            OsString::from(format!("unix:{path},server=on,wait=off"))
        };
        if let Some(socket) = &self.host_console {
            args.extend(["-serial".into(), server(socket)]);
        }
        if let Some(socket) = &self.qmp_socket {
            args.extend(["-qmp".into(), server(socket)]);
        }
        args.extend(self.extra_args.iter().map(OsString::from));
        args
    }

    /// The whole command as one shell-like line, for messages.
    pub fn command_line(&self) -> String {
        let mut line = self.qemu.clone();
        for arg in self.args() {
            line.push(' ');
            line.push_str(&arg.to_string_lossy());
        }
        line
    }
}

/// The QEMU id of the disk's drive.
pub const DISK_ID: &str = "disk0";

/// `-drive` and `-device` for the raw image at `path` as a modern virtio-blk disk. As for
/// the network card, behind an IOMMU a virtio device needs `iommu_platform=on`, or it uses
/// addresses as physical and bypasses it. QEMU's default cache mode (writeback) completes a
/// write once it is in the host's page cache; a flush (`fdatasync`) makes it durable.
fn disk_args(path: &std::path::Path, iommu: bool) -> Vec<OsString> {
    // QEMU's option syntax: a comma inside a value is written twice.
    let file = path.to_string_lossy().replace(',', ",,");
    let device = if iommu {
        format!("virtio-blk-pci,drive={DISK_ID},disable-legacy=on,iommu_platform=on,ats=off")
    } else {
        format!("virtio-blk-pci,drive={DISK_ID},disable-legacy=on")
    };
    [
        "-drive".to_string(),
        format!("file={file},if=none,format=raw,id={DISK_ID}"),
        "-device".to_string(),
        device,
    ]
    .into_iter()
    .map(OsString::from)
    .collect()
}

/// The code a guest wrote to the `isa-debug-exit` port, from QEMU's exit status (odd
/// statuses; status 1 is ambiguous with a QEMU error but QEMU reports those on stderr).
pub fn debug_exit_code(status: i32) -> Option<i32> {
    (status % 2 == 1).then_some((status - 1) / 2)
}

#[cfg(test)]
mod tests;
