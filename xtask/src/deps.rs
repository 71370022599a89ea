//! Host tools xtask runs: find them, and install the missing ones with apt-get when we are
//! root (otherwise say exactly which command to run).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

/// Something on the host that a verb needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tool {
    /// What it is, for messages.
    pub what: &'static str,
    /// How to tell it is there.
    pub probe: Probe,
    /// The Debian 12 package that provides it.
    pub package: &'static str,
}

/// How to tell a tool is installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// A program on `PATH`.
    Program(&'static str),
    /// A directory.
    Dir(&'static str),
    /// A file.
    File(&'static str),
}

/// What `run` needs.
pub const QEMU: &[Tool] = &[Tool {
    what: "qemu-system-x86_64",
    probe: Probe::Program("qemu-system-x86_64"),
    package: "qemu-system-x86",
}];

/// What `iso` needs: grub-mkrescue puts a BIOS and a UEFI boot image in the ISO when both
/// GRUB platforms are installed.
pub const ISO: &[Tool] = &[
    Tool {
        what: "grub-mkrescue",
        probe: Probe::Program("grub-mkrescue"),
        package: "grub-common",
    },
    Tool {
        what: "GRUB's BIOS modules",
        probe: Probe::Dir("/usr/lib/grub/i386-pc"),
        package: "grub-pc-bin",
    },
    Tool {
        what: "GRUB's UEFI modules",
        probe: Probe::Dir("/usr/lib/grub/x86_64-efi"),
        package: "grub-efi-amd64-bin",
    },
    Tool {
        what: "xorriso",
        probe: Probe::Program("xorriso"),
        package: "xorriso",
    },
    Tool {
        what: "mformat",
        probe: Probe::Program("mformat"),
        package: "mtools",
    },
];

/// UEFI firmware for QEMU (the UEFI boot test of the ISO).
pub const OVMF: &[Tool] = &[Tool {
    what: "OVMF (UEFI firmware for QEMU)",
    probe: Probe::File(OVMF_FD),
    package: "ovmf",
}];

/// The OVMF image QEMU boots with `-bios`.
pub const OVMF_FD: &str = "/usr/share/ovmf/OVMF.fd";

/// What the Bochs scenarios need (the Intel VMX path, which QEMU's TCG cannot emulate).
pub const BOCHS: &[Tool] = &[
    Tool {
        what: "bochs",
        probe: Probe::Program("bochs"),
        package: "bochs",
    },
    Tool {
        what: "Bochs' BIOS",
        probe: Probe::File(BOCHS_BIOS),
        package: "bochsbios",
    },
    Tool {
        what: "the VGA BIOS",
        probe: Probe::File(BOCHS_VGABIOS),
        package: "vgabios",
    },
    Tool {
        what: "Bochs' terminal display",
        probe: Probe::File(BOCHS_TERM_PLUGIN),
        package: "bochs-term",
    },
];

/// Bochs' system BIOS.
pub const BOCHS_BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";
/// The VGA BIOS Bochs loads.
pub const BOCHS_VGABIOS: &str = "/usr/share/vgabios/vgabios.bin";
/// Bochs' `term` display library (it has no `nogui` one).
const BOCHS_TERM_PLUGIN: &str = "/usr/lib/x86_64-linux-gnu/bochs/plugins/libbx_term_gui.so.0.0.0";

impl Tool {
    /// Whether the tool is there.
    pub fn present(&self) -> bool {
        match self.probe {
            Probe::Program(name) => find_program(name).is_some(),
            Probe::Dir(dir) => Path::new(dir).is_dir(),
            Probe::File(file) => Path::new(file).is_file(),
        }
    }
}

/// Finds an executable on `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// The packages to install for the missing `tools`, each once, in order.
pub fn missing_packages(tools: &[Tool], present: impl Fn(&Tool) -> bool) -> Vec<&'static str> {
    let mut packages = Vec::new();
    for tool in tools.iter().filter(|t| !present(t)) {
        if !packages.contains(&tool.package) {
            packages.push(tool.package);
        }
    }
    packages
}

/// The command a person should run to install `packages`.
pub fn install_hint(packages: &[&str]) -> String {
    format!("sudo apt-get install -y {}", packages.join(" "))
}

/// Makes sure every tool in `tools` is there, installing what is missing when possible.
pub fn ensure(tools: &[Tool]) -> Result<()> {
    let packages = missing_packages(tools, Tool::present);
    if packages.is_empty() {
        return Ok(());
    }
    let missing: Vec<&str> = tools
        .iter()
        .filter(|t| !t.present())
        .map(|t| t.what)
        .collect();
    if !is_root() || find_program("apt-get").is_none() {
        bail!(
            "missing host tools: {}\n  install them with: {}",
            missing.join(", "),
            install_hint(&packages)
        );
    }
    println!(
        "      installing {} (for {})",
        packages.join(" "),
        missing.join(", ")
    );
    apt_update_once()?;
    apt(&["install", "-y", "--no-install-recommends"], &packages)?;
    let still = missing_packages(tools, Tool::present);
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(" "));
    }
    Ok(())
}

/// Whether xtask runs as root.
pub fn is_root() -> bool {
    if let Ok(out) = Command::new("id").arg("-u").output()
        && out.status.success()
    {
        return String::from_utf8_lossy(&out.stdout).trim() == "0";
    }
    std::env::var("EUID").map(|v| v == "0").unwrap_or(false)
        || std::env::var("USER").map(|v| v == "root").unwrap_or(false)
}

static UPDATED: AtomicBool = AtomicBool::new(false);

fn apt_update_once() -> Result<()> {
    if UPDATED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    apt(&["update"], &[])
}

fn apt(args: &[&str], packages: &[&str]) -> Result<()> {
    let line = format!("apt-get {} {}", args.join(" "), packages.join(" "));
    println!("      $ {}", line.trim_end());
    let status = Command::new("apt-get")
        .args(args)
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .with_context(|| format!("running {line}"))?;
    if !status.success() {
        bail!("`{}` failed ({status})", line.trim_end());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_for_what_is_missing() {
        let all = missing_packages(ISO, |_| false);
        assert_eq!(
            all,
            [
                "grub-common",
                "grub-pc-bin",
                "grub-efi-amd64-bin",
                "xorriso",
                "mtools"
            ]
        );
        let bochs = missing_packages(BOCHS, |t| t.package == "bochs");
        assert_eq!(bochs, ["bochsbios", "vgabios", "bochs-term"]);
        let some = missing_packages(ISO, |t| t.package != "mtools");
        assert_eq!(install_hint(&some), "sudo apt-get install -y mtools");
        assert!(missing_packages(QEMU, |_| true).is_empty());
    }

    #[test]
    fn finds_programs_on_path() {
        assert!(find_program("sh").is_some());
        assert!(find_program("surely-not-a-program-xyz").is_none());
    }
}
