//! A BIOS-bootable GRUB ISO: GRUB loads the hypervisor through multiboot2 and the bundle as
//! its module. It boots in QEMU (`-cdrom`) and, written to a USB stick, on real machines.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bundle::Assembled;

/// File name of the hypervisor inside the ISO.
pub const KERNEL_NAME: &str = "bulkhead-hypervisor";

/// The GRUB configuration: boot at once, hypervisor plus bundle (the module's command line
/// is `bundle`, so the hypervisor can tell the module apart).
pub fn grub_cfg(bundle_name: &str) -> String {
    format!(
        "set timeout=0\n\
         set default=0\n\
         \n\
         menuentry \"Bulkhead\" {{\n\
         \x20   multiboot2 /boot/{KERNEL_NAME}\n\
         \x20   module2 /boot/{bundle_name} bundle\n\
         \x20   boot\n\
         }}\n"
    )
}

/// The default ISO path for a system: `target/bulkhead/<system>.iso`.
pub fn default_path(system_name: &str) -> PathBuf {
    crate::bundle::out_dir().join(format!("{system_name}.iso"))
}

/// Stages `boot/grub/grub.cfg`, the hypervisor and the bundle, and runs grub-mkrescue.
pub fn make(assembled: &Assembled, out: &Path) -> Result<PathBuf> {
    crate::deps::ensure(crate::deps::ISO)?;
    let stage = crate::bundle::out_dir().join(format!("iso-{}", assembled.name));
    if stage.exists() {
        std::fs::remove_dir_all(&stage).with_context(|| format!("clearing {}", stage.display()))?;
    }
    let boot = stage.join("boot");
    std::fs::create_dir_all(boot.join("grub"))?;
    let bundle_name = format!("{}.bundle", assembled.name);
    std::fs::write(boot.join("grub").join("grub.cfg"), grub_cfg(&bundle_name))?;
    copy(&assembled.hypervisor.elf, &boot.join(KERNEL_NAME))?;
    copy(&assembled.bundle_path, &boot.join(&bundle_name))?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }

    // grub-mkrescue is chatty (xorriso's progress); show its output only when it fails.
    let output = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(out)
        .arg(&stage)
        .output()
        .context("running grub-mkrescue")?;
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        bail!(
            "grub-mkrescue -o {} {} failed ({})",
            out.display(),
            stage.display(),
            output.status
        );
    }
    let len = std::fs::metadata(out)
        .with_context(|| format!("{}", out.display()))?
        .len();
    println!(
        "      iso        {:>10}  {}",
        crate::progress::human_bytes(len),
        out.display()
    );
    Ok(out.to_path_buf())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_cfg_boots_the_hypervisor_with_the_bundle() {
        assert_eq!(
            grub_cfg("default.bundle"),
            "set timeout=0\nset default=0\n\nmenuentry \"Bulkhead\" {\n    \
             multiboot2 /boot/bulkhead-hypervisor\n    \
             module2 /boot/default.bundle bundle\n    boot\n}\n"
        );
    }
}
