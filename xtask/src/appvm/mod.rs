//! `cargo xtask appvm`: the Linux AppVM template. Debian's cloud kernel (a bzImage) and an
//! initramfs built here (busybox, the kernel modules the AppVM needs, `/init`, and the
//! agent from `linux-appvm/agent`), written to `target/bulkhead/appvm/`. The hypervisor does
//! not boot it yet; `--check-in-qemu` boots it in plain QEMU as a smoke check.

mod cpio;
mod debian;
mod initramfs;
mod kernel;
mod modules;
mod smoke;
mod volumes;

use crate::progress::{Steps, human_bytes};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The options of the verb.
#[derive(Debug, Default)]
pub struct Options {
    /// A kernel package (.deb) instead of downloading Debian's.
    pub kernel_deb: Option<PathBuf>,
    /// A bare bzImage instead (the initramfs then has no modules).
    pub kernel: Option<PathBuf>,
    /// Where to write the template [default: target/bulkhead/appvm].
    pub out: Option<PathBuf>,
    /// Leave the agent out of the initramfs.
    pub no_agent: bool,
    /// Boot the result in plain QEMU (TCG) until `/init` reports.
    pub check_in_qemu: bool,
    /// Kernel modules to load besides the usual ones (the network benchmark's baseline
    /// adds virtio-net).
    pub extra_modules: &'static [&'static str],
}

/// What boots with the kernel. Only an initramfs for now; a later issue adds a root
/// filesystem image (`RootImage`: a disk the hypervisor hands over as a block device, with
/// `root=` on the command line), and everything that boots a template goes through
/// [`Template::qemu_args`] / [`Template::cmdline`], so that is one more arm here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Root {
    Initramfs(PathBuf),
}

/// A built AppVM template.
#[derive(Clone, Debug)]
pub struct Template {
    /// The bzImage.
    pub kernel: PathBuf,
    pub root: Root,
    /// Whether `/bin/agent` is in it (then the smoke check waits for "agent: ready" too).
    pub has_agent: bool,
}

/// The console line `/init` prints once the modules are loaded.
pub const INIT_OK: &str = "appvm: init ok";
/// The line the agent prints once configured.
pub const AGENT_READY: &str = "agent: ready";

/// Example network settings for the smoke check (the agent parses them from the command line).
pub const SMOKE_NET: &str =
    "bulkhead.ip=10.137.0.10/24 bulkhead.gw=10.137.0.1 bulkhead.dns=10.139.1.1";

impl Template {
    /// The kernel command line: the console on the first UART, stop instead of reboot.
    pub fn cmdline(&self, extra: &str) -> String {
        let base = "console=ttyS0 panic=-1 reboot=t";
        match &self.root {
            Root::Initramfs(_) if extra.is_empty() => base.to_string(),
            Root::Initramfs(_) => format!("{base} {extra}"),
        }
    }

    /// The QEMU arguments that boot the template directly (no firmware, no hypervisor).
    pub fn qemu_args(&self, extra_cmdline: &str) -> Vec<String> {
        let mut args: Vec<String> = [
            "-accel",
            "tcg",
            "-m",
            "256",
            "-nographic",
            "-no-reboot",
            "-kernel",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(self.kernel.display().to_string());
        match &self.root {
            Root::Initramfs(image) => {
                args.push("-initrd".into());
                args.push(image.display().to_string());
            }
        }
        args.push("-append".into());
        args.push(self.cmdline(extra_cmdline));
        args
    }
}

/// Where the template and its cache go by default.
/// Whether Debian's cloud kernel package can be had here (cached, or named by apt and
/// downloaded); the reason when not. The `appvm-template` scenario skips on `Err`.
pub fn kernel_available() -> std::result::Result<(), String> {
    let cache = default_out().join("cache");
    std::fs::create_dir_all(&cache).map_err(|e| e.to_string())?;
    let package = debian::kernel_package(&cache).map_err(|e| format!("{e:#}"))?;
    debian::download(&cache, &package)
        .map(|_| ())
        .map_err(|e| format!("{e:#}"))
}

pub fn default_out() -> PathBuf {
    crate::images::target_dir().join("bulkhead").join("appvm")
}

/// The verb.
pub fn verb(opts: Options) -> Result<()> {
    let mut steps = Steps::new(4 + usize::from(opts.check_in_qemu));
    let out = opts.out.clone().unwrap_or_else(default_out);
    let cache = default_out().join("cache");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    steps.next("getting the kernel");
    let kernel = kernel::obtain(&opts, &cache)?;
    let (major, minor) = kernel.boot_protocol;
    println!(
        "      {} ({}, bzImage, boot protocol {major}.{minor:02})",
        kernel.vmlinuz.display(),
        human_bytes(std::fs::metadata(&kernel.vmlinuz)?.len())
    );

    steps.next("getting busybox-static");
    let busybox = initramfs::busybox(&cache)?;

    let agent = if opts.no_agent {
        steps.next("skipping the agent (--no-agent)");
        None
    } else {
        steps.next("building the agent (static, x86_64-unknown-linux-gnu)");
        Some(initramfs::build_agent()?)
    };

    steps.next("building the initramfs");
    let built = initramfs::build(&kernel, &busybox, agent.as_deref(), opts.extra_modules)?;
    let vmlinuz = out.join("vmlinuz");
    let image = out.join("initramfs.cpio.gz");
    copy_if_changed(&kernel.vmlinuz, &vmlinuz)?;
    std::fs::write(&image, &built.gz).with_context(|| format!("writing {}", image.display()))?;
    print!("{}", built.summary);
    println!(
        "      wrote {} ({}) and {} ({}, {} uncompressed)",
        vmlinuz.display(),
        human_bytes(std::fs::metadata(&vmlinuz)?.len()),
        image.display(),
        human_bytes(built.gz.len() as u64),
        human_bytes(built.cpio_len as u64)
    );
    let template = Template {
        kernel: vmlinuz,
        root: Root::Initramfs(image),
        has_agent: agent.is_some(),
    };

    if opts.check_in_qemu {
        steps.next("booting the template in QEMU (TCG, not the hypervisor)");
        crate::deps::ensure(crate::deps::QEMU)?;
        smoke::check(&template, &out.join("smoke.log"))?;
    }
    println!("done in {:.1} s", steps.elapsed_secs());
    Ok(())
}

fn copy_if_changed(from: &Path, to: &Path) -> Result<()> {
    let data = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    if std::fs::read(to).ok().as_deref() != Some(&data[..]) {
        std::fs::write(to, &data).with_context(|| format!("writing {}", to.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_boots_kernel_and_initramfs_directly() {
        let t = Template {
            kernel: "/t/vmlinuz".into(),
            root: Root::Initramfs("/t/initramfs.cpio.gz".into()),
            has_agent: false,
        };
        assert_eq!(
            t.qemu_args("").join(" "),
            "-accel tcg -m 256 -nographic -no-reboot -kernel /t/vmlinuz \
             -initrd /t/initramfs.cpio.gz -append console=ttyS0 panic=-1 reboot=t"
        );
        assert_eq!(
            t.cmdline("bulkhead.ip=10.0.0.2/24"),
            "console=ttyS0 panic=-1 reboot=t bulkhead.ip=10.0.0.2/24"
        );
    }
}
