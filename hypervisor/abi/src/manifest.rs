//! The compiled system description: what xtask produces from `systems/*.toml` and the
//! hypervisor reads from the boot bundle. It is postcard-encoded; the first field is the
//! version, decoded on its own before the rest so an old hypervisor refuses a new manifest
//! with a clear message instead of misreading it.

use crate::boot_info::{ARGS_MAX, NAME_MAX};
use crate::label::Label;
use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

/// Version of the manifest layout.
pub const MANIFEST_VERSION: u16 = 4;
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

/// The compiled system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// Whether device assignment needs an IOMMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSpec {
    /// Index of the owning qube in `Manifest::qubes`.
    pub qube: u8,
    /// Which device.
    pub select: PciSelect,
}

/// How a system description names a PCI device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// What the channel is for (documentation carried into boot info and logs).
    pub purpose: String<PURPOSE_MAX>,
}

/// One qube.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// When the hypervisor starts a qube.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartPolicy {
    /// At boot, in manifest order.
    AtBoot,
    /// When a peer notifies it over one of its channels (a disposable: the system
    /// description gives a channel to it only to the qubes allowed to start it). Each start
    /// is from scratch in memory zeroed since the previous run.
    OnRequest,
}

/// What runs in a qube.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The bytes are not a postcard manifest.
    Malformed,
    /// The manifest was written for another layout version.
    Version {
        /// Version found.
        found: u16,
    },
    /// Trailing bytes after the manifest.
    TrailingBytes,
}

impl core::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ManifestError::Malformed => write!(f, "manifest is not a valid postcard manifest"),
            ManifestError::Version { found } => write!(
                f,
                "manifest version {found}, this hypervisor reads version {MANIFEST_VERSION}"
            ),
            ManifestError::TrailingBytes => write!(f, "manifest has trailing bytes"),
        }
    }
}

impl Manifest {
    /// Decodes a manifest, checking the version first.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let (version, _) =
            postcard::take_from_bytes::<u16>(bytes).map_err(|_| ManifestError::Malformed)?;
        if version != MANIFEST_VERSION {
            return Err(ManifestError::Version { found: version });
        }
        let (m, rest) =
            postcard::take_from_bytes::<Manifest>(bytes).map_err(|_| ManifestError::Malformed)?;
        if !rest.is_empty() {
            return Err(ManifestError::TrailingBytes);
        }
        Ok(m)
    }

    /// Encodes into `buf`, returning the used part.
    pub fn encode<'a>(&self, buf: &'a mut [u8]) -> Result<&'a mut [u8], postcard::Error> {
        postcard::to_slice(self, buf)
    }

    /// Encodes into a new vector.
    #[cfg(feature = "alloc")]
    pub fn to_vec(&self) -> alloc::vec::Vec<u8> {
        postcard::to_allocvec(self).expect("encoding into a Vec cannot fail")
    }
}

#[cfg(test)]
mod tests {
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
    fn refuses_other_versions_and_trailing_bytes() {
        let mut m = sample();
        m.version = 9;
        let mut buf = [0u8; 512];
        let bytes = m.encode(&mut buf).unwrap();
        assert_eq!(
            Manifest::decode(bytes),
            Err(ManifestError::Version { found: 9 })
        );
        let m = sample();
        let mut buf = [0u8; 512];
        let n = m.encode(&mut buf).unwrap().len();
        assert_eq!(
            Manifest::decode(&buf[..n + 1]),
            Err(ManifestError::TrailingBytes)
        );
    }

    proptest! {
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
