//! A GRUB ISO that boots with BIOS and with UEFI: GRUB loads the hypervisor through
//! multiboot2 and the bundle as its module. grub-mkrescue puts both GRUB platforms in it
//! (i386-pc from grub-pc-bin, x86_64-efi from grub-efi-amd64-bin; with only one installed it
//! silently makes a one-platform ISO, so both are required and the result is checked). It
//! boots in QEMU (`-cdrom`, with SeaBIOS or OVMF), in Bochs, and, written to a USB stick (it
//! is a hybrid image with an MBR and a GPT), on real machines.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bundle::Assembled;

/// File name of the hypervisor inside the ISO.
pub const KERNEL_NAME: &str = "bulkhead-hypervisor";

/// How GRUB leaves the display for the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Video {
    /// The linear mode the hypervisor's multiboot2 header asks for (UEFI GOP or VBE), which
    /// a gui qube with `framebuffer = true` draws on: what real machines get.
    Linear,
    /// VGA text (`gfxpayload=text`, set after `multiboot2`, which sets it from the header):
    /// for Bochs, whose `term` display stops at a graphics mode ("32 bpp graphics mode not
    /// supported").
    Text,
}

/// The GRUB configuration: boot at once, hypervisor plus bundle (the module's command line
/// is `bundle`, so the hypervisor can tell the module apart). GRUB's video drivers (UEFI
/// GOP, VBE, ...) are loaded so it can set the linear mode the hypervisor's multiboot2
/// header asks for and describe it (the framebuffer a gui qube may be given).
pub fn grub_cfg(bundle_name: &str, video: Video) -> String {
    let text = match video {
        Video::Linear => "",
        Video::Text => "    set gfxpayload=text\n",
    };
    format!(
        "set timeout=0\n\
         set default=0\n\
         insmod all_video\n\
         \n\
         menuentry \"Bulkhead\" {{\n\
         \x20   multiboot2 /boot/{KERNEL_NAME}\n\
         \x20   module2 /boot/{bundle_name} bundle\n\
         {text}\
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
    make_with(assembled, out, Video::Linear)
}

/// [`make`], with GRUB leaving the display as `video` says.
pub fn make_with(assembled: &Assembled, out: &Path, video: Video) -> Result<PathBuf> {
    crate::deps::ensure(crate::deps::ISO)?;
    // A staging folder per process: `cargo xtask test` may run twice on one tree at once.
    let stage =
        crate::bundle::out_dir().join(format!("iso-{}-{}", assembled.name, std::process::id()));
    if stage.exists() {
        std::fs::remove_dir_all(&stage).with_context(|| format!("clearing {}", stage.display()))?;
    }
    let result = stage_and_make(assembled, &stage, out, video);
    let _ = std::fs::remove_dir_all(&stage);
    result
}

fn stage_and_make(
    assembled: &Assembled,
    stage: &Path,
    out: &Path,
    video: Video,
) -> Result<PathBuf> {
    let boot = stage.join("boot");
    std::fs::create_dir_all(boot.join("grub"))?;
    let bundle_name = format!("{}.bundle", assembled.name);
    std::fs::write(
        boot.join("grub").join("grub.cfg"),
        grub_cfg(&bundle_name, video),
    )?;
    copy(&assembled.hypervisor.elf, &boot.join(KERNEL_NAME))?;
    copy(&assembled.bundle_path, &boot.join(&bundle_name))?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }

    // grub-mkrescue is chatty (xorriso's progress); show its output only when it fails.
    // Translations, fonts and themes are left out (19.6 MiB -> 9 MiB): the menu is never
    // shown (timeout 0) and GRUB's messages are English.
    let output = Command::new("grub-mkrescue")
        .args(["--locales=", "--fonts=", "--themes="])
        .arg("-o")
        .arg(out)
        .arg(stage)
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
    let platforms = boot_platforms(out)?;
    for want in ["BIOS", "UEFI"] {
        if !platforms.iter().any(|p| p == want) {
            bail!(
                "{} has no {want} boot image (it has: {}); are grub-pc-bin and grub-efi-amd64-bin installed?",
                out.display(),
                platforms.join(", ")
            );
        }
    }
    println!(
        "      iso        {:>10}  {} ({})",
        crate::progress::human_bytes(len),
        out.display(),
        platforms.join(" + ")
    );
    Ok(out.to_path_buf())
}

/// The platforms of the ISO's El Torito boot images ("BIOS", "UEFI"), as xorriso reports them.
pub fn boot_platforms(iso: &Path) -> Result<Vec<String>> {
    let output = Command::new("xorriso")
        .arg("-indev")
        .arg(iso)
        .args(["-report_el_torito", "plain"])
        .output()
        .context("running xorriso -report_el_torito")?;
    // xorriso writes its report to stdout and its chatter to stderr.
    Ok(parse_el_torito(&String::from_utf8_lossy(&output.stdout)))
}

/// Reads the platform column of `El Torito boot img :` lines.
fn parse_el_torito(report: &str) -> Vec<String> {
    let mut platforms: Vec<String> = Vec::new();
    for line in report.lines() {
        let Some(rest) = line.strip_prefix("El Torito boot img :") else {
            continue;
        };
        // "   1  BIOS  y   none  0x0000  0x00      4        3093"
        if let Some(platform) = rest.split_whitespace().nth(1)
            && !platforms.iter().any(|p| p == platform)
        {
            platforms.push(platform.to_string());
        }
    }
    platforms
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
    fn reads_boot_platforms_from_the_el_torito_report() {
        let report = "El Torito catalog  : 1627  1\n\
            El Torito images   :   N  Pltf  B   Emul  Ld_seg  Hdpt  Ldsiz         LBA\n\
            El Torito boot img :   1  BIOS  y   none  0x0000  0x00      4        3093\n\
            El Torito boot img :   2  UEFI  y   none  0x0000  0x00   5760          72\n\
            El Torito img path :   1  /boot/grub/i386-pc/eltorito.img\n";
        assert_eq!(parse_el_torito(report), ["BIOS", "UEFI"]);
        assert!(parse_el_torito("").is_empty());
    }

    #[test]
    fn grub_cfg_boots_the_hypervisor_with_the_bundle() {
        assert_eq!(
            grub_cfg("default.bundle", Video::Linear),
            "set timeout=0\nset default=0\ninsmod all_video\n\nmenuentry \"Bulkhead\" {\n    \
             multiboot2 /boot/bulkhead-hypervisor\n    \
             module2 /boot/default.bundle bundle\n    boot\n}\n"
        );
        assert!(grub_cfg("b", Video::Text).contains("bundle\n    set gfxpayload=text\n    boot\n"));
    }
}
