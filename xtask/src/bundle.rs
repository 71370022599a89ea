//! Assembling what boots: compile the system description, build the images it needs, and
//! write `target/bulkhead/<system>.manifest` and `target/bulkhead/<system>.bundle` (the file
//! QEMU gets as `-initrd` and GRUB loads as `module2`): the manifest, the unikernel images,
//! the AppVM template's kernel and initramfs (once, when some qube is Linux), the qubes'
//! configuration blobs, then the Linux qubes' command lines (`system::Content` and
//! `xtask/sysdesc/src/layout.rs` give the order).

use anyhow::{Context, Result, bail};
use bulkhead_abi::bundle::EntryKind;
use std::path::{Path, PathBuf};

use crate::images::{self, Built, HYPERVISOR, Image};
use crate::progress::{Steps, human_bytes};
use crate::qemu::{BootOptions, Media};
use crate::system::{self, CompiledSystem, Content};

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
    /// The qubes the manifest starts at boot, in start order (not the disposables, which
    /// start on request).
    pub fn qube_names(&self) -> Vec<&str> {
        self.system
            .manifest
            .qubes
            .iter()
            .filter(|q| q.start == bulkhead_abi::manifest::StartPolicy::AtBoot)
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
    assemble_images(system_path, steps, false)
}

/// [`assemble`] with the images' test-only hooks compiled in
/// ([`images::build_with_test_hooks`]): for the scenarios that drive one, never shipped.
pub fn assemble_with_test_hooks(system_path: &Path, steps: &mut Steps) -> Result<Assembled> {
    assemble_images(system_path, steps, true)
}

fn assemble_images(system_path: &Path, steps: &mut Steps, test_hooks: bool) -> Result<Assembled> {
    steps.next(&format!("compiling {}", system_path.display()));
    let mut system = system::compile_file(system_path)?;
    if !system.roots.is_empty() {
        steps.next("obtaining the templates' roots");
        crate::disk::add_verity(&mut system)?;
    }
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
    let built = if test_hooks {
        images::build_with_test_hooks(&wanted)?
    } else {
        images::build(&wanted)?
    };
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
    let template = if system.templates.is_empty() {
        None
    } else {
        Some(template()?)
    };

    steps.next("writing the boot bundle");
    let (manifest_path, bundle_path) = write(&name, &system, &images, template.as_ref())?;
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

/// The AppVM template's files, as `cargo xtask appvm` writes them.
#[derive(Clone, Debug)]
pub struct TemplateFiles {
    /// The bzImage.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
}

/// The command that builds the template by hand.
const APPVM_COMMAND: &str = "cargo xtask appvm";

/// Builds the AppVM template (`cargo xtask appvm`: Debian's cloud kernel and the
/// initramfs with the agent) for a system with Linux qubes. When Debian's kernel package
/// cannot be had, an already built template is used; without one, the error says what to
/// run.
fn template() -> Result<TemplateFiles> {
    let out = crate::appvm::default_out();
    let files = TemplateFiles {
        kernel: out.join("vmlinuz"),
        initrd: out.join("initramfs.cpio.gz"),
    };
    let built = files.kernel.is_file() && files.initrd.is_file();
    match crate::appvm::kernel_available() {
        Ok(()) => {
            println!("      building the AppVM template ({APPVM_COMMAND})");
            crate::appvm::verb(crate::appvm::Options::default()).with_context(|| {
                format!("building the AppVM template failed; run `{APPVM_COMMAND}` to see why")
            })?;
        }
        Err(why) if built => println!(
            "      Debian's kernel package is not available ({why}); using the template \
             already in {}",
            out.display()
        ),
        Err(why) => bail!(
            "this system has Linux qubes, which boot the AppVM template, and Debian's kernel \
             package cannot be fetched: {why}\nbuild the template first with \
             `{APPVM_COMMAND}` (where the Debian mirror is reachable), or from a downloaded \
             package with `{APPVM_COMMAND} --kernel-deb linux-image-<version>-cloud-amd64.deb`"
        ),
    }
    for f in [&files.kernel, &files.initrd] {
        if !f.is_file() {
            bail!("{} is missing; run `{APPVM_COMMAND}`", f.display());
        }
    }
    Ok(files)
}

/// Writes `<name>.manifest` and `<name>.bundle` into [`out_dir`] and prints their sizes.
/// `template` is needed when the system has Linux qubes.
pub fn write(
    name: &str,
    system: &CompiledSystem,
    images: &[Built],
    template: Option<&TemplateFiles>,
) -> Result<(PathBuf, PathBuf)> {
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

    let read =
        |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let mut contents = Vec::new();
    for image in images {
        contents.push((image.image.name, read(&image.elf)?));
    }
    let images: Vec<(&str, &[u8])> = contents.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    let template = match (system.templates.is_empty(), template) {
        (true, _) => None,
        (false, Some(t)) => Some((read(&t.kernel)?, read(&t.initrd)?)),
        (false, None) => bail!("the system has Linux qubes but no template was built"),
    };
    let template = template.as_ref().map(|(k, i)| (k.as_slice(), i.as_slice()));
    let entries = entries(system, &images, template)?;
    let borrowed: Vec<(EntryKind, &str, &[u8])> = entries
        .iter()
        .map(|(k, n, b)| (*k, n.as_str(), *b))
        .collect();
    let bundle = bulkhead_abi::bundle::build(&manifest, &borrowed);
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

/// The bundle entries after the manifest, in the order the manifest's indices assume:
/// `images` are the unikernel ELFs (name and bytes, in the order of `system.images`),
/// `template` the kernel and initramfs every Linux qube boots.
fn entries<'a>(
    system: &'a CompiledSystem,
    images: &[(&'a str, &'a [u8])],
    template: Option<(&'a [u8], &'a [u8])>,
) -> Result<Vec<(EntryKind, String, &'a [u8])>> {
    system
        .entries()
        .into_iter()
        .map(|e| {
            let bytes = match (e.content, template) {
                (Content::Image(n), _) => images
                    .iter()
                    .find(|(name, _)| *name == n)
                    .map(|(_, b)| *b)
                    .with_context(|| format!("image `{n}` was not built"))?,
                (Content::Kernel(_), Some((kernel, _))) => kernel,
                (Content::Initrd(_), Some((_, initrd))) => initrd,
                (Content::Kernel(t) | Content::Initrd(t), None) => {
                    bail!("template `{t}` was not built")
                }
                (Content::Bytes(b), _) => b,
            };
            Ok((e.kind, e.name, bytes))
        })
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

    /// Stand-in ELF bytes for each image a system names (`\x7fELF` + the name).
    fn fake_images(system: &system::CompiledSystem) -> Vec<(String, Vec<u8>)> {
        system
            .images
            .iter()
            .map(|n| (n.clone(), format!("\x7fELF{n}").into_bytes()))
            .collect()
    }

    /// Every qube's image and configuration index leads to an entry of the right kind, and
    /// each configuration entry decodes to what the compiler meant.
    #[test]
    fn configuration_blobs_follow_the_images() {
        let path = crate::workspace_root().join("systems/tests/network.toml");
        let system = system::compile_file(&path).unwrap();
        let fake = fake_images(&system);
        let images: Vec<(&str, &[u8])> = fake
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        let manifest = system.manifest.to_vec();
        let entries = entries(&system, &images, None).unwrap();
        let borrowed: Vec<(EntryKind, &str, &[u8])> = entries
            .iter()
            .map(|(k, n, b)| (*k, n.as_str(), *b))
            .collect();
        let bytes = bulkhead_abi::bundle::build(&manifest, &borrowed);
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

    /// A system with Linux qubes carries the template once, and each Linux qube's indices
    /// lead to its kernel, initramfs and command line.
    #[test]
    fn linux_qubes_share_one_kernel_and_initramfs() {
        let path = crate::workspace_root().join("systems/appvm.toml");
        let system = system::compile_file(&path).unwrap();
        let fake = fake_images(&system);
        let images: Vec<(&str, &[u8])> = fake
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        assert!(
            entries(&system, &images, None).is_err(),
            "no template given"
        );
        let template = Some((&b"bzImage"[..], &b"cpio"[..]));
        let entries = entries(&system, &images, template).unwrap();
        let borrowed: Vec<(EntryKind, &str, &[u8])> = entries
            .iter()
            .map(|(k, n, b)| (*k, n.as_str(), *b))
            .collect();
        let bytes = bulkhead_abi::bundle::build(&system.manifest.to_vec(), &borrowed);
        let bundle = Bundle::parse(&bytes).unwrap();
        assert_eq!(bundle.len(), 10);
        let kernels = (1..bundle.len())
            .filter(|i| bundle.entry(*i).unwrap().kind == EntryKind::LinuxKernel)
            .count();
        assert_eq!(kernels, 1);
        let m = Manifest::decode(bundle.manifest()).unwrap();
        for q in &m.qubes {
            let bulkhead_abi::manifest::QubeKind::Linux { initrd, cmdline } = q.kind else {
                continue;
            };
            assert_eq!(bundle.entry(usize::from(q.image)).unwrap().data, b"bzImage");
            assert_eq!(bundle.entry(usize::from(initrd)).unwrap().data, b"cpio");
            let line = bundle.entry(usize::from(cmdline)).unwrap();
            assert_eq!(line.kind, EntryKind::Cmdline);
            let text = std::str::from_utf8(line.data).unwrap();
            assert!(
                text.contains(&format!("bulkhead.name={} ", q.name)),
                "{text}"
            );
        }
    }
}
