//! The AppVM kernel: Debian's cloud kernel package (downloaded, or given with
//! `--kernel-deb`), or a bare bzImage (`--kernel`), checked to be a bzImage.

use super::{Options, debian};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// A kernel ready for the template.
#[derive(Debug)]
pub struct Kernel {
    pub vmlinuz: PathBuf,
    /// The boot protocol version from the setup header (major, minor).
    pub boot_protocol: (u8, u8),
    /// The kernel release (`6.1.0-56-cloud-amd64`) and its module tree, when from a package.
    pub modules: Option<(String, PathBuf)>,
}

/// Where the setup header's "HdrS" magic is, and its version right after.
const HDRS_AT: usize = 0x202;

/// The boot protocol version of a bzImage, or why it is not one.
pub fn bzimage_protocol(bytes: &[u8]) -> Result<(u8, u8)> {
    if bytes.len() < HDRS_AT + 6 {
        bail!("too short for a bzImage ({} bytes)", bytes.len());
    }
    if &bytes[HDRS_AT..HDRS_AT + 4] != b"HdrS" {
        bail!("no \"HdrS\" magic at offset 0x202: not a bzImage");
    }
    let version = u16::from_le_bytes([bytes[HDRS_AT + 4], bytes[HDRS_AT + 5]]);
    Ok(((version >> 8) as u8, version as u8))
}

/// Gets the kernel the options ask for.
pub fn obtain(opts: &Options, cache: &Path) -> Result<Kernel> {
    if let Some(file) = &opts.kernel {
        println!(
            "      --kernel: a bare bzImage, so the initramfs has no kernel modules (no virtio-net, no tun)"
        );
        return Ok(Kernel {
            boot_protocol: check(file)?,
            vmlinuz: file.clone(),
            modules: None,
        });
    }
    let deb = match &opts.kernel_deb {
        Some(deb) => deb.clone(),
        None => {
            let package = debian::kernel_package(cache)?;
            println!("      {} -> {package}", debian::KERNEL_META);
            debian::download(cache, &package)?
        }
    };
    let root = debian::extract(&deb, cache)?;
    from_tree(&root).with_context(|| format!("in {}", deb.display()))
}

/// The kernel in an unpacked package: `boot/vmlinuz-<release>` and its modules.
fn from_tree(root: &Path) -> Result<Kernel> {
    let boot = root.join("boot");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&boot)
        .with_context(|| format!("reading {}", boot.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    found.sort();
    let Some(vmlinuz) = found.pop() else {
        bail!("no boot/vmlinuz-* in the package");
    };
    let name = vmlinuz.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let release = name.trim_start_matches("vmlinuz-").to_string();
    let modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|d| root.join(d).join(&release))
        .find(|d| d.join("modules.dep").is_file() || d.join("modules.order").is_file());
    if modules.is_none() {
        println!(
            "      the package has no lib/modules/{release}/modules.order: no modules shipped"
        );
    }
    Ok(Kernel {
        boot_protocol: check(&vmlinuz)?,
        modules: modules.map(|m| (release, m)),
        vmlinuz,
    })
}

fn check(file: &Path) -> Result<(u8, u8)> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    bzimage_protocol(&bytes).with_context(|| file.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_setup_header() {
        let mut image = vec![0u8; 0x400];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        assert_eq!(bzimage_protocol(&image).unwrap(), (2, 15));
        image[0x202] = b'X';
        assert!(bzimage_protocol(&image).is_err());
        assert!(bzimage_protocol(&[0; 16]).is_err());
    }
}
