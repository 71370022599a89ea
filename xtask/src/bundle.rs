//! Assembling what boots: compile the system description, build the images it needs, and
//! write `target/bulkhead/<system>.manifest` and `target/bulkhead/<system>.bundle` (the file
//! QEMU gets as `-initrd` and GRUB loads as `module2`): the manifest, the images, then the
//! qubes' configuration blobs.

use anyhow::{Context, Result, bail};
use bulkhead_abi::bundle::EntryKind;
use std::path::{Path, PathBuf};

use crate::images::{self, Built, HYPERVISOR, Image};
use crate::progress::{Steps, human_bytes};
use crate::qemu::{BootOptions, Media};
use crate::system::{self, CompiledSystem};

/// Everything needed to boot one system.
pub struct Assembled {
    /// The compiled system description.
    pub system: CompiledSystem,
    /// The system's name (file names use it).
    pub name: String,
    /// The hypervisor ELF.
    pub hypervisor: Built,
    #[allow(dead_code, reason = "for tests and the TCB count")]
    /// The unikernel images in bundle order (`images[i]` is bundle entry `i + 1`).
    pub images: Vec<Built>,
    #[allow(dead_code, reason = "for tests and the TCB count")]
    /// The postcard manifest on its own (also bundle entry 0).
    pub manifest_path: PathBuf,
    /// The boot bundle.
    pub bundle_path: PathBuf,
    /// Guest RAM QEMU should give the machine (the system's `ram_mib`).
    pub ram_mib: u32,
}

impl Assembled {
    /// The qubes the manifest starts, in start order.
    pub fn qube_names(&self) -> Vec<&str> {
        self.system
            .manifest
            .qubes
            .iter()
            .map(|q| q.name.as_str())
            .collect()
    }

    /// Boot options for QEMU's direct (PVH) boot of this system, with the defaults of
    /// [`BootOptions::new`].
    pub fn boot_options(&self) -> BootOptions {
        let media = Media::Direct {
            kernel: self.hypervisor.elf.clone(),
            bundle: self.bundle_path.clone(),
        };
        BootOptions::new(media, self.ram_mib)
    }
}

/// Where xtask writes what it assembles: `target/bulkhead/`.
pub fn out_dir() -> PathBuf {
    images::target_dir().join("bulkhead")
}

/// Number of progress steps [`assemble`] announces.
pub const STEPS: usize = 3;

/// Compiles `system_path`, builds the hypervisor and the images it names (one cargo run),
/// and writes the manifest and the bundle.
pub fn assemble(system_path: &Path, steps: &mut Steps) -> Result<Assembled> {
    steps.next(&format!("compiling {}", system_path.display()));
    let system = system::compile_file(system_path)?;
    let name = system.manifest.system.as_str().to_string();
    let name = if name.is_empty() {
        file_stem(system_path)
    } else {
        name
    };
    let needed: Vec<&'static Image> = system
        .images
        .iter()
        .map(|n| images::unikernel_named(n))
        .collect::<Result<_>>()?;

    let mut wanted: Vec<&Image> = vec![&HYPERVISOR];
    for image in &needed {
        if !wanted.contains(image) {
            wanted.push(image);
        }
    }
    let list: Vec<&str> = wanted.iter().map(|i| i.name).collect();
    steps.next(&format!("building images ({})", list.join(", ")));
    let built = images::build(&wanted)?;
    let hypervisor = built[0].clone();
    let images: Vec<Built> = needed
        .iter()
        .map(|n| {
            built
                .iter()
                .find(|b| b.image == **n)
                .cloned()
                .expect("built above")
        })
        .collect();

    steps.next("writing the boot bundle");
    let (manifest_path, bundle_path) = write(&name, &system, &images)?;
    println!(
        "      hypervisor {:>10}  {}",
        size_of(&hypervisor.elf)?,
        hypervisor.elf.display()
    );
    let ram_mib = system.ram_mib;
    Ok(Assembled {
        system,
        name,
        hypervisor,
        images,
        manifest_path,
        bundle_path,
        ram_mib,
    })
}

/// Writes `<name>.manifest` and `<name>.bundle` into [`out_dir`] and prints their sizes.
pub fn write(name: &str, system: &CompiledSystem, images: &[Built]) -> Result<(PathBuf, PathBuf)> {
    if images.len() != system.images.len() {
        bail!(
            "{} images for {} bundle entries",
            images.len(),
            system.images.len()
        );
    }
    let dir = out_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let manifest = system.manifest.to_vec();
    let manifest_path = dir.join(format!("{name}.manifest"));
    std::fs::write(&manifest_path, &manifest)
        .with_context(|| format!("writing {}", manifest_path.display()))?;

    let mut contents = Vec::new();
    for image in images {
        let bytes = std::fs::read(&image.elf)
            .with_context(|| format!("reading {}", image.elf.display()))?;
        contents.push((image.image.name, bytes));
    }
    let images: Vec<(&str, &[u8])> = contents.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    let entries = entries(system, &images);
    let bundle = bulkhead_abi::bundle::build(&manifest, &entries);
    let bundle_path = dir.join(format!("{name}.bundle"));
    std::fs::write(&bundle_path, &bundle)
        .with_context(|| format!("writing {}", bundle_path.display()))?;

    println!(
        "      manifest   {:>10}",
        human_bytes(manifest.len() as u64)
    );
    for (_, n, bytes) in &entries {
        println!("      {n:<10} {:>10}", human_bytes(bytes.len() as u64));
    }
    println!(
        "      bundle     {:>10}  {} ({} entries)",
        human_bytes(bundle.len() as u64),
        bundle_path.display(),
        entries.len() + 1
    );
    Ok((manifest_path, bundle_path))
}

/// The bundle entries after the manifest: the images (name and bytes, in the order of
/// `system.images`), then the configuration blobs (`system.configs`), the order the
/// manifest's entry indices assume.
fn entries<'a>(
    system: &'a CompiledSystem,
    images: &[(&'a str, &'a [u8])],
) -> Vec<(EntryKind, &'a str, &'a [u8])> {
    images
        .iter()
        .map(|(n, b)| (EntryKind::Image, *n, *b))
        .chain(
            system
                .configs
                .iter()
                .map(|c| (EntryKind::Config, c.entry.as_str(), c.bytes.as_slice())),
        )
        .collect()
}

fn size_of(path: &Path) -> Result<String> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("{}", path.display()))?
        .len();
    Ok(human_bytes(len))
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "system".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_abi::bundle::Bundle;
    use bulkhead_abi::manifest::Manifest;
    use bulkhead_qubeconfig::QubeConfig;

    /// Every qube's image and configuration index leads to an entry of the right kind, and
    /// each configuration entry decodes to what the compiler meant.
    #[test]
    fn configuration_blobs_follow_the_images() {
        let path = crate::workspace_root().join("systems/tests/network.toml");
        let system = system::compile_file(&path).unwrap();
        let fake: Vec<(String, Vec<u8>)> = system
            .images
            .iter()
            .map(|n| (n.clone(), format!("\x7fELF{n}").into_bytes()))
            .collect();
        let images: Vec<(&str, &[u8])> = fake
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        let manifest = system.manifest.to_vec();
        let bytes = bulkhead_abi::bundle::build(&manifest, &entries(&system, &images));
        let bundle = Bundle::parse(&bytes).unwrap();
        assert_eq!(bundle.len(), 1 + 3 + 4, "manifest, 3 images, 4 blobs");
        let m = Manifest::decode(bundle.manifest()).unwrap();
        for q in &m.qubes {
            let image = bundle.entry(usize::from(q.image)).unwrap();
            assert_eq!(image.kind, EntryKind::Image);
            assert_eq!(image.data, format!("\x7fELF{}", image.name).as_bytes());
            let config = bundle.entry(usize::from(q.config.unwrap())).unwrap();
            assert_eq!(config.kind, EntryKind::Config);
            assert_eq!(config.name, format!("{}.cfg", q.name));
            let decoded = QubeConfig::decode(config.data).unwrap();
            let blob = system
                .configs
                .iter()
                .find(|c| c.entry == config.name)
                .unwrap();
            assert_eq!(decoded, blob.config);
        }
    }
}
