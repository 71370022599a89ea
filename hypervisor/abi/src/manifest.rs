//! The compiled system description: what xtask produces from `systems/*.toml` and the
//! hypervisor reads from the boot bundle. A fixed little-endian layout ([`crate::wire`]):
//!
//! ```text
//! header   magic "BKMF", version u16, qube count u8, channel count u8, device count u8,
//!          IOMMU policy u8, port range count u8, 1 zero byte, system name (text, NAME_MAX)
//! qubes    name (text, NAME_MAX), kind u8 (0 unikernel, 1 Linux), initrd u16, cmdline u16,
//!          image u16, memory MiB u32, label u8, restart u8, start u8, flags u8
//!          (bit 0 framebuffer, bit 1 admin; unikernels only, one qube at most each),
//!          has config u8, config u16, cpus u32 (a mask below bit MAX_CPUS),
//!          vcpus u8 (1 for a unikernel, 1..=MAX_VCPUS for a Linux qube),
//!          args (text, ARGS_MAX)
//! channels name (text, NAME_MAX), a u8, b u8, size u32, slot size u32, bulk size u32,
//!          purpose (text, PURPOSE_MAX)
//! devices  qube u8, 0 = by address: segment u16, bus u8, device u8, function u8, 0;
//!               1 = by ID: vendor u16, device u16, index u8, 0
//! ports    qube u8, 0, first u16, last u16 (inclusive, first <= last)
//! ```
//!
//! A text field is its length (u16) and that many UTF-8 bytes, zero-padded to its width.
//! The version is read before anything else, so an old hypervisor refuses a new manifest
//! with a clear message instead of misreading it; every tag, padding byte, count and qube
//! reference is checked, and nothing may follow the last record. What a port grant may
//! name (no reserved port, no port twice, unikernels only) is checked by the hypervisor
//! (`bulkhead_hvcore::ioports`), as it checks channel geometry.

use crate::boot_info::{ARGS_MAX, NAME_MAX};
use crate::bounded::{BoundedString as String, BoundedVec as Vec};
use crate::io_ports::{MAX_PORT_RANGES, PortRange};
use crate::label::Label;
use crate::wire::{Reader, WireError, Writer};

/// Version of the manifest layout.
pub const MANIFEST_VERSION: u16 = 11;
/// The manifest's first four bytes.
pub const MANIFEST_MAGIC: [u8; 4] = *b"BKMF";
/// Most qubes one system may describe.
pub const MAX_QUBES: usize = 24;
/// Smallest memory a qube may have, in MiB.
pub const MIN_QUBE_MEMORY_MIB: u32 = 4;
/// Largest memory a qube may have, in MiB.
pub const MAX_QUBE_MEMORY_MIB: u32 = 4096;
/// Most channels one system may describe.
pub const MAX_CHANNELS: usize = 48;
/// Longest channel purpose text.
pub const PURPOSE_MAX: usize = 48;
/// Most PCI devices one system may assign.
pub const MAX_DEVICES: usize = 16;
/// Qube memory is allocated and mapped in units of this many MiB.
pub const QUBE_MEMORY_GRANULE_MIB: u32 = 2;
/// Most CPUs the hypervisor starts; a qube's [`QubeSpec::cpus`] names CPUs below this.
pub const MAX_CPUS: usize = 16;
/// Most virtual CPUs one (Linux) qube may have ([`QubeSpec::vcpus`]).
pub const MAX_VCPUS: u8 = 8;

/// The compiled system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`].
    pub version: u16,
    /// Name of the system description (its file stem).
    pub system: String<NAME_MAX>,
    /// The qubes, in start order.
    pub qubes: Vec<QubeSpec, MAX_QUBES>,
    /// The channels between qubes.
    pub channels: Vec<ChannelSpec, MAX_CHANNELS>,
    /// PCI devices assigned to qubes.
    pub devices: Vec<DeviceSpec, MAX_DEVICES>,
    /// What to do when a DMA-capable device is assigned and no IOMMU is found.
    pub iommu: IommuPolicy,
    /// I/O ports passed through to qubes.
    pub ports: Vec<PortSpec, MAX_PORT_RANGES>,
}

/// A range of I/O ports given to one (unikernel) qube.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortSpec {
    /// Index of the owning qube in `Manifest::qubes`.
    pub qube: u8,
    /// The ports.
    pub ports: PortRange,
}

/// Whether device assignment needs an IOMMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IommuPolicy {
    /// Assign devices only behind an IOMMU; without one the hypervisor refuses the devices
    /// (their qubes do not start) and says why.
    Required,
    /// The system description accepted that without an IOMMU an assigned device can read
    /// and write all memory. The hypervisor still uses an IOMMU when there is one, and logs
    /// a warning at every boot when there is not.
    AcceptRisk,
}

/// One PCI device given to one qube.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    /// Index of the owning qube in `Manifest::qubes`.
    pub qube: u8,
    /// Which device.
    pub select: PciSelect,
}

/// How a system description names a PCI device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciSelect {
    /// By address (segment, bus, device, function).
    Address {
        /// PCI segment group.
        segment: u16,
        /// Bus.
        bus: u8,
        /// Device (0..32).
        device: u8,
        /// Function (0..8).
        function: u8,
    },
    /// By vendor and device ID: the `index`-th such function in bus order.
    Id {
        /// Vendor ID.
        vendor: u16,
        /// Device ID.
        device: u16,
        /// Which of several identical functions, from 0.
        index: u8,
    },
}

/// One channel: shared memory between exactly two qubes (see [`crate::channel`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelSpec {
    /// Unique name, for log lines and for the endpoints to find it.
    pub name: String<NAME_MAX>,
    /// Index of endpoint A (sends on ring 0) in `Manifest::qubes`.
    pub a: u8,
    /// Index of endpoint B (sends on ring 1).
    pub b: u8,
    /// Size of the region in bytes (a multiple of 4 KiB, see `channel::Geometry`).
    pub size: u32,
    /// Bytes per slot (a power of two).
    pub slot_size: u32,
    /// Bytes of the channel's bulk area, 0 for none (see `channel::bulk_size_valid`; the
    /// hypervisor checks it, as it checks the ring geometry).
    pub bulk_size: u32,
    /// What the channel is for (documentation carried into boot info and logs).
    pub purpose: String<PURPOSE_MAX>,
}

/// One qube.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QubeSpec {
    /// Unique name.
    pub name: String<NAME_MAX>,
    /// What runs in it.
    pub kind: QubeKind,
    /// Index of its image in the boot bundle.
    pub image: u16,
    /// Memory in MiB (a multiple of [`QUBE_MEMORY_GRANULE_MIB`]).
    pub memory_mib: u32,
    /// Label colour.
    pub label: Label,
    /// What to do when it stops.
    pub restart: RestartPolicy,
    /// Free-form arguments handed to the qube in its boot info.
    pub args: String<ARGS_MAX>,
    /// Bundle entry holding the qube's configuration blob, copied into its memory at start.
    pub config: Option<u16>,
    /// When it starts.
    pub start: StartPolicy,
    /// It gets the firmware's framebuffer, if the boot loader left one (a unikernel; one
    /// qube at most).
    pub framebuffer: bool,
    /// It is the admin qube (Qubes' `@adminvm`): it may list, start and kill qubes with the
    /// admin hypercalls (a unikernel; one qube at most).
    pub admin: bool,
    /// The CPUs it may run on, as a bit mask (bit `n`: CPU `n`, below [`MAX_CPUS`]); 0: any.
    /// CPUs are numbered as the hypervisor starts them: 0 is the boot CPU, then the other
    /// usable processors of the firmware's MADT in table order.
    pub cpus: u32,
    /// How many virtual CPUs it has: 1 for a unikernel; 1..=[`MAX_VCPUS`] for a Linux qube.
    pub vcpus: u8,
}

/// When the hypervisor starts a qube.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartPolicy {
    /// At boot, in manifest order.
    AtBoot,
    /// When a peer notifies it over one of its channels (a disposable: the system
    /// description gives a channel to it only to the qubes allowed to start it). Each start
    /// is from scratch in memory zeroed since the previous run.
    OnRequest,
}

/// What runs in a qube.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QubeKind {
    /// A Bulkhead unikernel (an ELF built on the Bulkhead runtime); `QubeSpec::image` is
    /// its ELF.
    Unikernel,
    /// An unmodified Linux kernel (a bzImage, `QubeSpec::image`) booted with the 64-bit
    /// boot protocol on the hypervisor's guest platform.
    Linux {
        /// Bundle entry of its initramfs.
        initrd: u16,
        /// Bundle entry of its kernel command line (UTF-8, no NUL).
        cmdline: u16,
    },
}

/// What the hypervisor does when a qube stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Leave it stopped.
    Never,
    /// Restart it when it faults or exits with a non-zero status.
    OnFailure,
    /// Restart it whenever it stops.
    Always,
}

impl RestartPolicy {
    /// The name used in system descriptions.
    pub const fn name(self) -> &'static str {
        match self {
            RestartPolicy::Never => "never",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Always => "always",
        }
    }

    /// Whether a qube that stopped (`failed` = fault or non-zero exit) is started again.
    pub const fn restarts(self, failed: bool) -> bool {
        match self {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => failed,
            RestartPolicy::Always => true,
        }
    }
}

/// Why a manifest could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestError {
    /// The bytes do not start with [`MANIFEST_MAGIC`].
    NotAManifest,
    /// The manifest was written for another layout version.
    Version {
        /// Version found.
        found: u16,
    },
    /// More qubes, channels or devices than the limits allow.
    TooMany,
    /// A channel or device names a qube that is not there.
    BadReference,
    /// More than one qube is given the framebuffer.
    Framebuffers,
    /// More than one qube is the admin qube.
    Admins,
    /// A field could not be read.
    Wire(WireError),
}

impl From<WireError> for ManifestError {
    fn from(e: WireError) -> Self {
        ManifestError::Wire(e)
    }
}

impl core::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ManifestError::NotAManifest => write!(f, "not a manifest (no BKMF magic)"),
            ManifestError::Version { found } => write!(
                f,
                "manifest version {found}, this hypervisor reads version {MANIFEST_VERSION}"
            ),
            ManifestError::TooMany => write!(f, "manifest has more entries than the limits"),
            ManifestError::BadReference => {
                write!(f, "manifest names a qube that is not in it")
            }
            ManifestError::Framebuffers => {
                write!(f, "manifest gives the framebuffer to more than one qube")
            }
            ManifestError::Admins => write!(f, "manifest names more than one admin qube"),
            ManifestError::Wire(WireError::Truncated) => write!(f, "manifest is truncated"),
            ManifestError::Wire(WireError::BadText) => write!(f, "manifest has a bad text field"),
            ManifestError::Wire(WireError::BadValue) => {
                write!(
                    f,
                    "manifest has an undefined tag, a value out of range or non-zero padding"
                )
            }
            ManifestError::Wire(WireError::TrailingBytes) => {
                write!(f, "manifest has trailing bytes")
            }
        }
    }
}

/// Why a manifest could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodeError;

const TEXT: usize = 2;
/// Bytes of the header.
pub const HEADER_LEN: usize = 4 + 2 + 4 + 2 + TEXT + NAME_MAX;
/// Bytes of one qube record.
pub const QUBE_LEN: usize = TEXT + NAME_MAX + 1 + 2 + 2 + 2 + 4 + 5 + 2 + 4 + 1 + TEXT + ARGS_MAX;
/// Bytes of one channel record.
pub const CHANNEL_LEN: usize = TEXT + NAME_MAX + 2 + 4 + 4 + 4 + TEXT + PURPOSE_MAX;
/// Bytes of one device record.
pub const DEVICE_LEN: usize = 8;
/// Bytes of one port record.
pub const PORT_LEN: usize = 6;

impl Manifest {
    /// Bytes of this manifest's encoding.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + self.qubes.len() * QUBE_LEN
            + self.channels.len() * CHANNEL_LEN
            + self.devices.len() * DEVICE_LEN
            + self.ports.len() * PORT_LEN
    }

    /// Reads a manifest, checking the magic and version first.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let mut r = Reader::new(bytes);
        if r.bytes(4).map_err(|_| ManifestError::NotAManifest)? != MANIFEST_MAGIC {
            return Err(ManifestError::NotAManifest);
        }
        let version = r.u16()?;
        if version != MANIFEST_VERSION {
            return Err(ManifestError::Version { found: version });
        }
        let (nq, nc, nd) = (r.u8()?, r.u8()?, r.u8()?);
        let iommu = match r.u8()? {
            0 => IommuPolicy::Required,
            1 => IommuPolicy::AcceptRisk,
            _ => return Err(WireError::BadValue.into()),
        };
        let np = r.u8()?;
        r.zero()?;
        let system = r.text()?;
        let mut m = Manifest {
            version,
            system,
            qubes: Vec::new(),
            channels: Vec::new(),
            devices: Vec::new(),
            iommu,
            ports: Vec::new(),
        };
        for _ in 0..nq {
            let q = QubeSpec::read(&mut r)?;
            if q.framebuffer && m.qubes.iter().any(|o| o.framebuffer) {
                return Err(ManifestError::Framebuffers);
            }
            if q.admin && m.qubes.iter().any(|o| o.admin) {
                return Err(ManifestError::Admins);
            }
            m.qubes.push(q).map_err(|_| ManifestError::TooMany)?;
        }
        for _ in 0..nc {
            let c = ChannelSpec::read(&mut r)?;
            if usize::from(c.a.max(c.b)) >= m.qubes.len() {
                return Err(ManifestError::BadReference);
            }
            m.channels.push(c).map_err(|_| ManifestError::TooMany)?;
        }
        for _ in 0..nd {
            let d = DeviceSpec::read(&mut r)?;
            if usize::from(d.qube) >= m.qubes.len() {
                return Err(ManifestError::BadReference);
            }
            m.devices.push(d).map_err(|_| ManifestError::TooMany)?;
        }
        for _ in 0..np {
            let p = PortSpec::read(&mut r)?;
            if usize::from(p.qube) >= m.qubes.len() {
                return Err(ManifestError::BadReference);
            }
            m.ports.push(p).map_err(|_| ManifestError::TooMany)?;
        }
        r.finish()?;
        Ok(m)
    }

    /// Writes into `buf`, returning the used part.
    pub fn encode<'a>(&self, buf: &'a mut [u8]) -> Result<&'a mut [u8], EncodeError> {
        let mut w = Writer::new(buf);
        w.bytes(&MANIFEST_MAGIC);
        w.u16(self.version);
        w.u8(self.qubes.len() as u8);
        w.u8(self.channels.len() as u8);
        w.u8(self.devices.len() as u8);
        w.u8(match self.iommu {
            IommuPolicy::Required => 0,
            IommuPolicy::AcceptRisk => 1,
        });
        w.u8(self.ports.len() as u8);
        w.u8(0);
        w.text(&self.system);
        self.qubes.iter().for_each(|q| q.write(&mut w));
        self.channels.iter().for_each(|c| c.write(&mut w));
        self.devices.iter().for_each(|d| d.write(&mut w));
        self.ports.iter().for_each(|p| p.write(&mut w));
        let n = w.finish().ok_or(EncodeError)?;
        Ok(&mut buf[..n])
    }

    /// Writes into a new vector.
    #[cfg(feature = "alloc")]
    pub fn to_vec(&self) -> alloc::vec::Vec<u8> {
        let mut out = alloc::vec![0u8; self.encoded_len()];
        let n = self.encode(&mut out).map_or(0, |b| b.len());
        out.truncate(n);
        out
    }
}

impl QubeSpec {
    fn write(&self, w: &mut Writer<'_>) {
        w.text(&self.name);
        let (kind, initrd, cmdline) = match self.kind {
            QubeKind::Unikernel => (0, 0, 0),
            QubeKind::Linux { initrd, cmdline } => (1, initrd, cmdline),
        };
        w.u8(kind);
        w.u16(initrd);
        w.u16(cmdline);
        w.u16(self.image);
        w.u32(self.memory_mib);
        w.u8(self.label as u8);
        w.u8(match self.restart {
            RestartPolicy::Never => 0,
            RestartPolicy::OnFailure => 1,
            RestartPolicy::Always => 2,
        });
        w.u8(match self.start {
            StartPolicy::AtBoot => 0,
            StartPolicy::OnRequest => 1,
        });
        w.u8(u8::from(self.framebuffer) | u8::from(self.admin) << 1);
        w.u8(u8::from(self.config.is_some()));
        w.u16(self.config.unwrap_or(0));
        w.u32(self.cpus);
        w.u8(self.vcpus);
        w.text(&self.args);
    }

    fn read(r: &mut Reader<'_>) -> Result<QubeSpec, WireError> {
        let name = r.text()?;
        let (kind, initrd, cmdline) = (r.u8()?, r.u16()?, r.u16()?);
        let kind = match kind {
            0 if initrd == 0 && cmdline == 0 => QubeKind::Unikernel,
            1 => QubeKind::Linux { initrd, cmdline },
            _ => return Err(WireError::BadValue),
        };
        let image = r.u16()?;
        let memory_mib = r.u32()?;
        let label = *Label::ALL
            .get(usize::from(r.u8()?))
            .ok_or(WireError::BadValue)?;
        let restart = match r.u8()? {
            0 => RestartPolicy::Never,
            1 => RestartPolicy::OnFailure,
            2 => RestartPolicy::Always,
            _ => return Err(WireError::BadValue),
        };
        let start = match r.u8()? {
            0 => StartPolicy::AtBoot,
            1 => StartPolicy::OnRequest,
            _ => return Err(WireError::BadValue),
        };
        let flags = r.u8()?;
        if flags & !0b11 != 0 || (flags != 0 && kind != QubeKind::Unikernel) {
            return Err(WireError::BadValue);
        }
        let (framebuffer, admin) = (flags & 1 != 0, flags & 2 != 0);
        let config = match (r.u8()?, r.u16()?) {
            (0, 0) => None,
            (1, index) => Some(index),
            _ => return Err(WireError::BadValue),
        };
        let cpus = r.u32()?;
        if u64::from(cpus) >> MAX_CPUS != 0 {
            return Err(WireError::BadValue);
        }
        let vcpus = r.u8()?;
        let most = match kind {
            QubeKind::Unikernel => 1,
            QubeKind::Linux { .. } => MAX_VCPUS,
        };
        if !(1..=most).contains(&vcpus) {
            return Err(WireError::BadValue);
        }
        let args = r.text()?;
        Ok(QubeSpec {
            name,
            kind,
            image,
            memory_mib,
            label,
            restart,
            args,
            config,
            start,
            framebuffer,
            admin,
            cpus,
            vcpus,
        })
    }
}

impl ChannelSpec {
    fn write(&self, w: &mut Writer<'_>) {
        w.text(&self.name);
        w.u8(self.a);
        w.u8(self.b);
        w.u32(self.size);
        w.u32(self.slot_size);
        w.u32(self.bulk_size);
        w.text(&self.purpose);
    }

    fn read(r: &mut Reader<'_>) -> Result<ChannelSpec, WireError> {
        Ok(ChannelSpec {
            name: r.text()?,
            a: r.u8()?,
            b: r.u8()?,
            size: r.u32()?,
            slot_size: r.u32()?,
            bulk_size: r.u32()?,
            purpose: r.text()?,
        })
    }
}

impl DeviceSpec {
    fn write(&self, w: &mut Writer<'_>) {
        w.u8(self.qube);
        match self.select {
            PciSelect::Address {
                segment,
                bus,
                device,
                function,
            } => {
                w.u8(0);
                w.u16(segment);
                w.u8(bus);
                w.u8(device);
                w.u8(function);
            }
            PciSelect::Id {
                vendor,
                device,
                index,
            } => {
                w.u8(1);
                w.u16(vendor);
                w.u16(device);
                w.u8(index);
            }
        }
        w.u8(0);
    }

    fn read(r: &mut Reader<'_>) -> Result<DeviceSpec, WireError> {
        let qube = r.u8()?;
        let select = match r.u8()? {
            0 => {
                let (segment, bus, device) = (r.u16()?, r.u8()?, r.u8()?);
                let function = r.u8()?;
                PciSelect::Address {
                    segment,
                    bus,
                    device,
                    function,
                }
            }
            1 => PciSelect::Id {
                vendor: r.u16()?,
                device: r.u16()?,
                index: r.u8()?,
            },
            _ => return Err(WireError::BadValue),
        };
        r.zero()?;
        Ok(DeviceSpec { qube, select })
    }
}

impl PortSpec {
    fn write(&self, w: &mut Writer<'_>) {
        w.u8(self.qube);
        w.u8(0);
        w.u16(self.ports.first);
        w.u16(self.ports.last);
    }

    fn read(r: &mut Reader<'_>) -> Result<PortSpec, WireError> {
        let qube = r.u8()?;
        r.zero()?;
        let (first, last) = (r.u16()?, r.u16()?);
        let ports = PortRange::new(first, last).ok_or(WireError::BadValue)?;
        Ok(PortSpec { qube, ports })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Manifest {
        let mut qubes = Vec::new();
        for (i, name) in ["net", "firewall"].iter().enumerate() {
            qubes
                .push(QubeSpec {
                    name: String::try_from(*name).unwrap(),
                    kind: QubeKind::Unikernel,
                    image: i as u16 + 1,
                    memory_mib: 8,
                    label: Label::Red,
                    restart: RestartPolicy::OnFailure,
                    args: String::new(),
                    config: Some(3),
                    start: StartPolicy::AtBoot,
                    framebuffer: i == 1,
                    admin: i == 0,
                    cpus: if i == 1 { 0b101 } else { 0 },
                    vcpus: 1,
                })
                .unwrap();
        }
        let mut channels = Vec::new();
        channels
            .push(ChannelSpec {
                name: String::try_from("uplink").unwrap(),
                a: 0,
                b: 1,
                size: 16384,
                slot_size: 128,
                bulk_size: 1 << 20,
                purpose: String::try_from("frames").unwrap(),
            })
            .unwrap();
        Manifest {
            version: MANIFEST_VERSION,
            system: String::try_from("t").unwrap(),
            qubes,
            channels,
            devices: Vec::from_slice(&[DeviceSpec {
                qube: 0,
                select: PciSelect::Id {
                    vendor: 0x1af4,
                    device: 0x1041,
                    index: 0,
                },
            }])
            .unwrap(),
            iommu: IommuPolicy::Required,
            ports: Vec::from_slice(&[
                PortSpec {
                    qube: 1,
                    ports: PortRange::single(0x60),
                },
                PortSpec {
                    qube: 1,
                    ports: PortRange::new(0x2F8, 0x2FF).unwrap(),
                },
            ])
            .unwrap(),
        }
    }

    #[test]
    fn round_trips() {
        let m = sample();
        let mut buf = [0u8; 512];
        let bytes = m.encode(&mut buf).unwrap();
        assert_eq!(Manifest::decode(bytes), Ok(m));
    }

    #[test]
    fn cpu_masks_round_trip_below_max_cpus() {
        // Offset of the cpus mask in qube record `i`.
        let at = |i: usize| HEADER_LEN + i * QUBE_LEN + TEXT + NAME_MAX + 1 + 2 + 2 + 2 + 4 + 5 + 2;
        let mut m = sample();
        for cpus in [0, 1, 0b1010, (1 << MAX_CPUS) - 1] {
            m.qubes[0].cpus = cpus;
            let bytes = m.to_vec();
            assert_eq!(bytes[at(0)..at(0) + 4], cpus.to_le_bytes());
            assert_eq!(Manifest::decode(&bytes), Ok(m.clone()));
        }
        let mut bytes = sample().to_vec();
        assert_eq!(bytes[at(1)], 0b101);
        bytes[at(1) + 2] = 1; // bit 16: CPU 16, past MAX_CPUS
        assert_eq!(
            Manifest::decode(&bytes),
            Err(ManifestError::Wire(WireError::BadValue))
        );
    }

    #[test]
    fn vcpu_counts_round_trip_and_bad_ones_are_refused() {
        // Offset of the vcpus byte in qube record `i` (right after the cpus mask).
        let at =
            |i: usize| HEADER_LEN + i * QUBE_LEN + TEXT + NAME_MAX + 1 + 2 + 2 + 2 + 4 + 5 + 2 + 4;
        let mut m = sample();
        m.qubes[0].kind = QubeKind::Linux {
            initrd: 4,
            cmdline: 5,
        };
        m.qubes[0].admin = false;
        for vcpus in 1..=MAX_VCPUS {
            m.qubes[0].vcpus = vcpus;
            let bytes = m.to_vec();
            assert_eq!(bytes[at(0)], vcpus);
            assert_eq!(Manifest::decode(&bytes), Ok(m.clone()));
        }
        let refused = |bytes: &[u8]| {
            assert_eq!(
                Manifest::decode(bytes),
                Err(ManifestError::Wire(WireError::BadValue))
            )
        };
        // A Linux qube: none, or more than MAX_VCPUS.
        for bad in [0, MAX_VCPUS + 1, u8::MAX] {
            let mut bytes = m.to_vec();
            bytes[at(0)] = bad;
            refused(&bytes);
        }
        // A unikernel (qube 1) has exactly one.
        let bytes = sample().to_vec();
        assert_eq!(bytes[at(1)], 1);
        for bad in [0, 2, MAX_VCPUS] {
            let mut bytes = bytes.clone();
            bytes[at(1)] = bad;
            refused(&bytes);
        }
    }

    #[test]
    fn refuses_other_versions_and_trailing_bytes() {
        let mut m = sample();
        m.version = MANIFEST_VERSION + 1;
        let mut buf = [0u8; 512];
        let bytes = m.encode(&mut buf).unwrap();
        assert_eq!(
            Manifest::decode(bytes),
            Err(ManifestError::Version {
                found: MANIFEST_VERSION + 1
            })
        );
        let m = sample();
        let mut buf = [0u8; 512];
        let n = m.encode(&mut buf).unwrap().len();
        assert_eq!(
            Manifest::decode(&buf[..n + 1]),
            Err(ManifestError::Wire(WireError::TrailingBytes))
        );
        assert_eq!(Manifest::decode(b"BKMX"), Err(ManifestError::NotAManifest));
        let mut bad = sample();
        bad.devices[0].qube = 2;
        let mut buf = [0u8; 512];
        let n = bad.encode(&mut buf).unwrap().len();
        assert_eq!(
            Manifest::decode(&buf[..n]),
            Err(ManifestError::BadReference)
        );
    }

    #[test]
    fn lengths_match_the_layout() {
        let m = sample();
        let mut buf = [0u8; 1024];
        assert_eq!(m.encode(&mut buf).unwrap().len(), m.encoded_len());
        assert_eq!(
            m.encoded_len(),
            HEADER_LEN + 2 * QUBE_LEN + CHANNEL_LEN + DEVICE_LEN + 2 * PORT_LEN
        );
        let mut small = [0u8; 100];
        assert_eq!(m.encode(&mut small).err(), Some(EncodeError));
    }

    #[test]
    fn refuses_bad_framebuffer_flags() {
        // Offset of the framebuffer byte in qube record `i`.
        let at = |i: usize| HEADER_LEN + i * QUBE_LEN + TEXT + NAME_MAX + 1 + 2 + 2 + 2 + 4 + 3;
        let m = sample();
        let mut buf = [0u8; 1024];
        let n = m.encode(&mut buf).unwrap().len();
        assert_eq!(buf[at(1)], 1);
        assert!(Manifest::decode(&buf[..n]).unwrap().qubes[1].framebuffer);
        let mut bad = buf;
        bad[at(0)] = 1;
        assert_eq!(
            Manifest::decode(&bad[..n]),
            Err(ManifestError::Framebuffers)
        );
        // Qube 0 is the admin qube (bit 1): a second one is refused, and so is bit 2.
        assert_eq!(buf[at(0)], 2);
        assert!(Manifest::decode(&buf[..n]).unwrap().qubes[0].admin);
        let mut bad = buf;
        bad[at(1)] = 3;
        assert_eq!(Manifest::decode(&bad[..n]), Err(ManifestError::Admins));
        let mut bad = buf;
        bad[at(1)] = 4;
        assert_eq!(
            Manifest::decode(&bad[..n]),
            Err(ManifestError::Wire(WireError::BadValue))
        );
        let mut linux = sample();
        linux.qubes[1].kind = QubeKind::Linux {
            initrd: 4,
            cmdline: 5,
        };
        let n = linux.encode(&mut buf).unwrap().len();
        assert_eq!(
            Manifest::decode(&buf[..n]),
            Err(ManifestError::Wire(WireError::BadValue))
        );
    }

    #[test]
    fn refuses_bad_port_records() {
        let m = sample();
        let mut buf = [0u8; 1024];
        let n = m.encode(&mut buf).unwrap().len();
        let last = n - PORT_LEN;
        // The last record: qube, zero, first, last.
        let mut bad = buf;
        bad[last] = 2;
        assert_eq!(
            Manifest::decode(&bad[..n]),
            Err(ManifestError::BadReference)
        );
        let mut bad = buf;
        bad[last + 1] = 1;
        assert_eq!(
            Manifest::decode(&bad[..n]),
            Err(ManifestError::Wire(WireError::BadValue))
        );
        let mut bad = buf;
        bad[last + 2..last + 6].copy_from_slice(&[0x01, 0x03, 0x00, 0x03]); // 0x301-0x300
        assert_eq!(
            Manifest::decode(&bad[..n]),
            Err(ManifestError::Wire(WireError::BadValue))
        );
        // A count past the records: truncated; a count past the limit: too many.
        let count = 4 + 2 + 4;
        let mut bad = buf;
        bad[count] = 3;
        assert_eq!(
            Manifest::decode(&bad[..n]),
            Err(ManifestError::Wire(WireError::Truncated))
        );
        let mut many = sample();
        many.ports.clear();
        for i in 0..MAX_PORT_RANGES as u16 {
            many.ports
                .push(PortSpec {
                    qube: 0,
                    ports: PortRange::single(0x100 + i),
                })
                .unwrap();
        }
        let mut bytes = many.to_vec();
        assert_eq!(Manifest::decode(&bytes), Ok(many.clone()));
        bytes[count] = MAX_PORT_RANGES as u8 + 1;
        bytes.extend_from_slice(&[0, 0, 0x20, 0x01, 0x20, 0x01]);
        assert_eq!(Manifest::decode(&bytes), Err(ManifestError::TooMany));
    }

    fn text<const N: usize>() -> impl Strategy<Value = String<N>> {
        proptest::string::string_regex(&std::format!("[a-z0-9.é-]{{0,{}}}", N / 2))
            .unwrap()
            .prop_map(|s| String::try_from(s.as_str()).unwrap())
    }

    fn qube() -> impl Strategy<Value = QubeSpec> {
        (
            text::<NAME_MAX>(),
            prop_oneof![
                Just(QubeKind::Unikernel),
                (any::<u16>(), any::<u16>())
                    .prop_map(|(initrd, cmdline)| QubeKind::Linux { initrd, cmdline })
            ],
            any::<u16>(),
            any::<u32>(),
            0usize..8,
            0usize..3,
            text::<ARGS_MAX>(),
            proptest::option::of(any::<u16>()),
            (any::<bool>(), any::<bool>(), any::<bool>()),
            0u32..1 << MAX_CPUS,
            1..=MAX_VCPUS,
        )
            .prop_map(
                |(
                    name,
                    kind,
                    image,
                    memory_mib,
                    label,
                    restart,
                    args,
                    config,
                    (req, fb, admin),
                    cpus,
                    vcpus,
                )| {
                    QubeSpec {
                        name,
                        kind,
                        image,
                        memory_mib,
                        label: Label::ALL[label],
                        restart: [
                            RestartPolicy::Never,
                            RestartPolicy::OnFailure,
                            RestartPolicy::Always,
                        ][restart],
                        args,
                        config,
                        start: if req {
                            StartPolicy::OnRequest
                        } else {
                            StartPolicy::AtBoot
                        },
                        framebuffer: fb && kind == QubeKind::Unikernel,
                        admin: admin && kind == QubeKind::Unikernel,
                        cpus,
                        vcpus: if kind == QubeKind::Unikernel {
                            1
                        } else {
                            vcpus
                        },
                    }
                },
            )
    }

    fn manifest() -> impl Strategy<Value = Manifest> {
        (
            text::<NAME_MAX>(),
            proptest::collection::vec(qube(), 1..MAX_QUBES),
            proptest::collection::vec(
                (
                    text::<NAME_MAX>(),
                    any::<u8>(),
                    any::<u8>(),
                    any::<u32>(),
                    any::<u32>(),
                    any::<u32>(),
                    text::<PURPOSE_MAX>(),
                ),
                0..MAX_CHANNELS,
            ),
            proptest::collection::vec(
                (
                    any::<u8>(),
                    any::<bool>(),
                    any::<u16>(),
                    any::<u16>(),
                    any::<u8>(),
                ),
                0..MAX_DEVICES,
            ),
            any::<bool>(),
            proptest::collection::vec(
                (any::<u8>(), any::<u16>(), any::<u16>()),
                0..=MAX_PORT_RANGES,
            ),
        )
            .prop_map(|(system, mut qubes, channels, devices, risk, ports)| {
                let n = qubes.len() as u8;
                // One framebuffer qube at most: the first that asked keeps it.
                let first = qubes.iter().position(|q| q.framebuffer);
                let admin = qubes.iter().position(|q| q.admin);
                for (i, q) in qubes.iter_mut().enumerate() {
                    q.framebuffer &= Some(i) == first;
                    q.admin &= Some(i) == admin;
                }
                Manifest {
                    version: MANIFEST_VERSION,
                    system,
                    channels: Vec::try_from_iter(channels.into_iter().map(
                        |(name, a, b, size, slot_size, bulk_size, purpose)| ChannelSpec {
                            name,
                            a: a % n,
                            b: b % n,
                            size,
                            slot_size,
                            bulk_size,
                            purpose,
                        },
                    ))
                    .unwrap(),
                    devices: Vec::try_from_iter(devices.into_iter().map(|(q, by_id, x, y, z)| {
                        DeviceSpec {
                            qube: q % n,
                            select: if by_id {
                                PciSelect::Id {
                                    vendor: x,
                                    device: y,
                                    index: z,
                                }
                            } else {
                                PciSelect::Address {
                                    segment: x,
                                    bus: y as u8,
                                    device: z,
                                    function: (y >> 8) as u8,
                                }
                            },
                        }
                    }))
                    .unwrap(),
                    qubes: Vec::try_from_iter(qubes).unwrap(),
                    iommu: if risk {
                        IommuPolicy::AcceptRisk
                    } else {
                        IommuPolicy::Required
                    },
                    ports: Vec::try_from_iter(ports.into_iter().map(|(q, a, b)| PortSpec {
                        qube: q % n,
                        ports: PortRange {
                            first: a.min(b),
                            last: a.max(b),
                        },
                    }))
                    .unwrap(),
                }
            })
    }

    proptest! {
        #[test]
        fn every_manifest_round_trips(m in manifest()) {
            let bytes = m.to_vec();
            prop_assert_eq!(bytes.len(), m.encoded_len());
            prop_assert_eq!(Manifest::decode(&bytes), Ok(m));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Manifest::decode(&bytes);
        }

        #[test]
        fn decode_of_mutated_manifest_never_panics(pos in 0usize..200, val: u8) {
            let mut buf = [0u8; 512];
            let n = sample().encode(&mut buf).unwrap().len();
            buf[pos % n] = val;
            let _ = Manifest::decode(&buf[..n]);
        }
    }
}
