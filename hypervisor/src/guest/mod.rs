//! What runs in a qube: a unikernel or an unmodified Linux kernel. Each kind is a [`Guest`]:
//! it loads itself into the qube's [`Machine`], answers the exits it causes, prepares each
//! entry and says goodbye when the qube stops. The qube, the exit vocabulary and the
//! scheduler know no kind; [`GuestKind`] dispatches statically (no heap).
//!
//! - [`unikernel`]: Bulkhead's own guests: the load plan of `bulkhead_hvcore::unikernel`, the
//!   hypercalls, and every other exit stops the qube.
//! - [`linux`]: the privileged half of the Linux guest platform (its pure half is
//!   `bulkhead_platform`): the boot protocol into memory, ports, MMIO, MSRs, interrupts.

pub mod linux;
pub mod unikernel;

pub use linux::{Linux, LinuxAp, LinuxImage};
pub use unikernel::Unikernel;

use crate::channels::Endpoints;
use crate::devices::assign::Assigned;
use crate::devices::vtd::VtdError;
use crate::exits::Outcome;
use crate::memory::guest::GuestMemory;
use crate::virt::{AnyVcpu, Exit};
use bulkhead_abi::boot_info::MAX_DEVICES_PER_QUBE;
use bulkhead_abi::manifest::QubeSpec;
use bulkhead_hvcore::console::LineBuffer;
use bulkhead_hvcore::paging::PagingError;
use bulkhead_hvcore::unikernel::PlanError;
use bulkhead_platform::cpuid::GuestCpu;

/// The devices a qube owns.
pub type Devices = bulkhead_hvcore::collections::BoundedVec<Assigned, MAX_DEVICES_PER_QUBE>;

/// What a guest runs on and may use: everything of a qube but its kind and its run state.
pub struct Machine {
    /// Index in the manifest.
    pub id: usize,
    /// What the system description says about it.
    pub spec: QubeSpec,
    /// Its RAM.
    pub mem: GuestMemory,
    /// Its virtual CPU.
    pub vcpu: AnyVcpu,
    /// The channels it is an endpoint of (position = local index = event bit).
    pub channels: Endpoints,
    /// The PCI devices it owns (position = device index of the `pci_config_*` calls).
    pub devices: Devices,
    /// The I/O ports it owns (passed through by its vCPU; only a unikernel has any).
    pub ports: bulkhead_hvcore::ioports::Ports,
    /// The firmware's framebuffer, mapped uncached at its physical address (a unikernel's).
    pub framebuffer: Option<bulkhead_hvcore::bootinfo::Framebuffer>,
    /// Partial console line.
    pub console: LineBuffer,
    /// Pending event bits: bit `i` = local channel `i` was notified by its peer.
    pub events: u64,
    /// Said it is ready since its last start.
    pub ready: bool,
}

impl Machine {
    /// Writes a line (or part of one) of the guest's console output.
    pub fn console_write(&mut self, bytes: &[u8], mut on_line: impl FnMut(&[u8])) {
        let (id, name, label) = (self.id, &self.spec.name, self.spec.label);
        self.console.push(bytes, |line| {
            on_line(line);
            crate::console::qube_line(id, name, label, line)
        });
    }

    /// Logs `qube NAME ready` the first time since its start.
    pub fn set_ready(&mut self) {
        if !self.ready {
            self.ready = true;
            crate::hvlog!("qube {} ready", self.spec.name.as_str());
        }
    }
}

/// Why a qube could not be created or loaded.
#[derive(Clone, Copy, Debug)]
pub enum LoadError {
    /// Not enough free RAM for the qube.
    NoMemory(u64),
    /// The unikernel's image, configuration, channels or devices do not fit its memory.
    Layout(PlanError),
    /// Page tables could not be built.
    Paging(PagingError),
    /// The IOMMU domain for its devices could not be set up.
    Iommu(VtdError),
    /// The Linux kernel, initramfs or command line cannot be booted.
    Linux(bulkhead_platform::boot::LinuxError),
    /// The ACPI tables did not fit.
    Acpi,
    /// Something this hypervisor cannot do (the reason).
    Unsupported(&'static str),
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::NoMemory(b) => write!(f, "not enough free memory ({} KiB needed)", b / 1024),
            LoadError::Layout(e) => write!(f, "{e}"),
            LoadError::Paging(e) => write!(f, "page tables: {e:?}"),
            LoadError::Iommu(e) => write!(f, "IOMMU domain: {e}"),
            LoadError::Linux(e) => write!(f, "Linux boot: {e}"),
            LoadError::Acpi => write!(f, "the ACPI tables do not fit"),
            LoadError::Unsupported(why) => write!(f, "{why}"),
        }
    }
}

/// One kind of guest.
pub trait Guest {
    /// Checks that the image can be loaded into `m`, without loading it (a bad image is
    /// refused at boot even when the qube starts later).
    fn check(&self, m: &Machine) -> Result<(), LoadError>;
    /// Loads the guest into `m`'s memory, zeroed first, and puts its vCPU at the entry;
    /// `restarts` is how often the qube restarted.
    fn load(&mut self, m: &mut Machine, restarts: u32) -> Result<(), LoadError>;
    /// Handles one exit.
    fn handle_exit(&mut self, m: &mut Machine, exit: Exit) -> Outcome;
    /// Before each entry: what arrived while it was out (events, its timer, interrupts).
    fn before_entry(&mut self, m: &mut Machine);
    /// When it must run again at the latest to see its own timer (ns since boot), if ever.
    fn wake_deadline(&self) -> Option<u64>;
    /// It stops: hands over what it still holds (console bytes).
    fn on_stop(&mut self, m: &mut Machine);
}

/// A unikernel or a Linux guest.
// No heap, so no box: a qube's slot in the fixed table holds the larger (Linux) variant, as
// it held an `Option` of it before.
#[allow(clippy::large_enum_variant)]
pub enum GuestKind {
    /// Bulkhead's own guest.
    Unikernel(Unikernel),
    /// An unmodified Linux kernel on the guest platform.
    Linux(Linux),
}

impl GuestKind {
    /// The image it boots (ELF or bzImage).
    pub fn image(&self) -> &'static [u8] {
        match self {
            GuestKind::Unikernel(u) => u.image,
            GuestKind::Linux(l) => l.image.kernel,
        }
    }

    /// Whether its vCPU runs an unmodified OS (XSAVE, its own MSRs, EFER and PAT), which
    /// some backends cannot offer.
    pub fn is_linux(&self) -> bool {
        matches!(self, GuestKind::Linux(_))
    }
}

/// Forwards a call to the guest inside.
macro_rules! dispatch {
    ($self:ident, $g:ident => $e:expr) => {
        match $self {
            GuestKind::Unikernel($g) => $e,
            GuestKind::Linux($g) => $e,
        }
    };
}

impl Guest for GuestKind {
    fn check(&self, m: &Machine) -> Result<(), LoadError> {
        dispatch!(self, g => g.check(m))
    }
    fn load(&mut self, m: &mut Machine, restarts: u32) -> Result<(), LoadError> {
        dispatch!(self, g => g.load(m, restarts))
    }
    fn handle_exit(&mut self, m: &mut Machine, exit: Exit) -> Outcome {
        dispatch!(self, g => g.handle_exit(m, exit))
    }
    fn before_entry(&mut self, m: &mut Machine) {
        dispatch!(self, g => g.before_entry(m))
    }
    fn wake_deadline(&self) -> Option<u64> {
        dispatch!(self, g => g.wake_deadline())
    }
    fn on_stop(&mut self, m: &mut Machine) {
        dispatch!(self, g => g.on_stop(m))
    }
}

/// Answers the CPUID the vCPU executed (leaf in `eax`, subleaf in `ecx`) as `guest` is to
/// see the CPU: the one policy of `bulkhead_platform::cpuid` over this CPU's own answers,
/// for both kinds of guest. The instruction is not skipped.
fn answer_cpuid(vcpu: &mut AnyVcpu, guest: &GuestCpu) {
    let (leaf, sub) = (vcpu.gpr(0) as u32, vcpu.gpr(1) as u32);
    let host = |l, s| {
        let r = crate::arch::x86::cpu::cpuid(l, s);
        bulkhead_platform::cpuid::CpuidResult {
            eax: r.eax,
            ebx: r.ebx,
            ecx: r.ecx,
            edx: r.edx,
        }
    };
    let r = bulkhead_platform::cpuid::guest_cpuid(leaf, sub, host, crate::time::tsc_khz(), guest);
    for (reg, v) in [(0, r.eax), (3, r.ebx), (1, r.ecx), (2, r.edx)] {
        vcpu.set_gpr(reg, u64::from(v));
    }
}
