//! Picks the kernel modules the AppVM needs out of the kernel package: reads `modules.dep`
//! and `modules.builtin`, follows dependencies, and orders the result so every module comes
//! after the ones it depends on (the order `/init` loads them with `insmod`).

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// The modules the AppVM asks for (names as `modprobe` spells them). Any that the kernel
/// has built in, or does not have at all, are reported, not shipped. Only what the guest
/// platform offers: channels are PCI devices for `uio_pci_generic`, the network is a TAP
/// device the agent bridges to the firewall channel. There is no virtio device to drive;
/// every module costs boot time (an `insmod` process, relocation, its init call).
/// `nbd` is loaded only by an AppVM with a private volume (`bulkhead.home=`): see
/// [`HOME_MODULE`].
pub const WANTED: &[&str] = &["tun", "uio", "uio_pci_generic", HOME_MODULE];
/// The module `/init` loads only for a private volume or a template root (the agent serves
/// them as `/dev/nbd0` and `/dev/nbd1`).
pub const HOME_MODULE: &str = "nbd";
/// What a template root needs besides NBD, loaded (with what they depend on) only with
/// `bulkhead.root=`: device-mapper and its verity target (the agent sets up the checked
/// device), squashfs (the template's file system) and overlayfs (the in-memory changes).
pub const ROOT_MODULES: &[&str] = &["dm_mod", "dm_verity", "squashfs", "overlay"];

/// A module's name from its path: the file name without `.ko` (and a compression suffix),
/// dashes as underscores (`kernel/drivers/net/tun.ko` -> `tun`).
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// `modules.dep`: module name -> (its path, the paths it depends on).
#[derive(Debug, Default)]
pub struct DepTable {
    modules: BTreeMap<String, (String, Vec<String>)>,
}

impl DepTable {
    /// Parses `modules.dep` (`path: dep-path dep-path ...`, one module a line).
    pub fn parse(text: &str) -> DepTable {
        let mut modules = BTreeMap::new();
        for line in text.lines() {
            let Some((path, deps)) = line.split_once(':') else {
                continue;
            };
            let path = path.trim();
            if path.is_empty() {
                continue;
            }
            let deps = deps.split_whitespace().map(str::to_string).collect();
            modules.insert(module_name(path), (path.to_string(), deps));
        }
        DepTable { modules }
    }

    pub fn len(&self) -> usize {
        self.modules.len()
    }
}

/// The names listed in `modules.builtin` (one path a line).
pub fn parse_builtin(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(module_name)
        .collect()
}

/// What became of the wanted modules.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Module paths to ship, dependencies first.
    pub load_order: Vec<String>,
    /// Wanted names the kernel has built in.
    pub builtin: Vec<String>,
    /// Wanted names that are neither a module nor built in.
    pub absent: Vec<String>,
}

/// Resolves `wanted` against the kernel's tables.
pub fn resolve(deps: &DepTable, builtin: &[String], wanted: &[&str]) -> Resolution {
    let mut r = Resolution::default();
    for &name in wanted {
        let name = name.replace('-', "_");
        if deps.modules.contains_key(&name) {
            visit(deps, &name, &mut r.load_order, &mut Vec::new());
        } else if builtin.contains(&name) {
            r.builtin.push(name);
        } else {
            r.absent.push(name);
        }
    }
    r
}

/// Depth-first: a module's dependencies, then the module.
fn visit(deps: &DepTable, name: &str, order: &mut Vec<String>, stack: &mut Vec<String>) {
    let Some((path, needs)) = deps.modules.get(name) else {
        return;
    };
    if order.contains(path) || stack.iter().any(|s| s == name) {
        return;
    }
    stack.push(name.to_string());
    for dep in needs {
        visit(deps, &module_name(dep), order, stack);
    }
    stack.pop();
    order.push(path.clone());
}

/// The `modules.dep` subset for the shipped modules (so busybox `modprobe` works too): each
/// module with all it needs, nearest first, as depmod writes it.
pub fn dep_subset(deps: &DepTable, shipped: &[String]) -> String {
    let mut out = String::new();
    let mut sorted: Vec<&String> = shipped.iter().collect();
    sorted.sort();
    for path in sorted {
        let mut order = Vec::new();
        visit(deps, &module_name(path), &mut order, &mut Vec::new());
        order.pop(); // the module itself
        out.push_str(path);
        out.push(':');
        for d in order.iter().rev() {
            out.push(' ');
            out.push_str(d);
        }
        out.push('\n');
    }
    out
}

/// A module's `depends=` list from its `.modinfo` section (what depmod reads).
pub fn modinfo_depends(ko: &[u8]) -> Result<Vec<String>> {
    use object::read::elf::{FileHeader, SectionHeader};
    type Header = object::elf::FileHeader64<object::Endianness>;
    let header = Header::parse(ko)?;
    let endian = header.endian()?;
    let sections = header.sections(endian, ko)?;
    let Some((_, section)) = sections.section_by_name(endian, b".modinfo") else {
        return Ok(Vec::new());
    };
    let data = section.data(endian, ko)?;
    Ok(data
        .split(|&b| b == 0)
        .filter_map(|entry| entry.strip_prefix(b"depends="))
        .flat_map(|list| {
            String::from_utf8_lossy(list)
                .split(',')
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|d| !d.is_empty())
        .map(|d| d.replace('-', "_"))
        .collect())
}

/// A package's `modules.dep`, or when the package has none (Debian runs depmod only when it
/// installs the kernel) the same lines made here for the modules `wanted` reaches: paths
/// from `modules.order`, dependencies from each module's `.modinfo`.
pub fn dep_table(dir: &Path, wanted: &[&str]) -> Result<DepTable> {
    if let Ok(text) = std::fs::read_to_string(dir.join("modules.dep")) {
        return Ok(DepTable::parse(&text));
    }
    let order = std::fs::read_to_string(dir.join("modules.order"))
        .with_context(|| format!("no modules.dep nor modules.order in {}", dir.display()))?;
    let paths: BTreeMap<String, String> = order
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|p| (module_name(p), p.to_string()))
        .collect();
    let mut lines = BTreeMap::new();
    let mut todo: Vec<String> = wanted.iter().map(|w| w.replace('-', "_")).collect();
    while let Some(name) = todo.pop() {
        let Some(path) = paths.get(&name) else {
            continue;
        };
        if lines.contains_key(path) {
            continue;
        }
        let ko = std::fs::read(dir.join(path)).with_context(|| format!("reading {path}"))?;
        let needs = modinfo_depends(&ko).with_context(|| format!("reading {path}"))?;
        let dep_paths: Vec<&str> = needs
            .iter()
            .filter_map(|n| paths.get(n).map(String::as_str))
            .collect();
        lines.insert(path.clone(), format!("{path}: {}", dep_paths.join(" ")));
        todo.extend(needs);
    }
    let text: Vec<String> = lines.into_values().collect();
    Ok(DepTable::parse(&text.join("\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/net/tun.ko:
kernel/drivers/uio/uio_pci_generic.ko: kernel/drivers/uio/uio.ko
kernel/drivers/uio/uio.ko:
kernel/drivers/char/virtio_console.ko:
kernel/drivers/foo/dash-name.ko.xz:
";

    #[test]
    fn names_from_paths() {
        assert_eq!(module_name("kernel/drivers/net/tun.ko"), "tun");
        assert_eq!(module_name("kernel/a/dash-name.ko.xz"), "dash_name");
        assert_eq!(module_name("virtio_pci"), "virtio_pci");
    }

    #[test]
    fn dependencies_come_first_and_once() {
        let deps = DepTable::parse(DEP);
        assert_eq!(deps.len(), 8);
        let builtin = parse_builtin(
            "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\n",
        );
        let r = resolve(
            &deps,
            &builtin,
            &[
                "virtio",
                "virtio_net",
                "failover",
                "uio_pci_generic",
                "vfio",
                "dash-name",
            ],
        );
        assert_eq!(
            r.load_order,
            [
                "kernel/net/core/failover.ko",
                "kernel/drivers/net/net_failover.ko",
                "kernel/drivers/net/virtio_net.ko",
                "kernel/drivers/uio/uio.ko",
                "kernel/drivers/uio/uio_pci_generic.ko",
                "kernel/drivers/foo/dash-name.ko.xz",
            ]
        );
        assert_eq!(r.builtin, ["virtio"]);
        assert_eq!(r.absent, ["vfio"]);
    }

    #[test]
    fn subset_lists_only_shipped_modules() {
        let deps = DepTable::parse(DEP);
        let r = resolve(&deps, &[], &["uio_pci_generic"]);
        assert_eq!(
            dep_subset(&deps, &r.load_order),
            "kernel/drivers/uio/uio.ko:\nkernel/drivers/uio/uio_pci_generic.ko: kernel/drivers/uio/uio.ko\n"
        );
        // Transitive, nearest first, even when the table lists only direct dependencies.
        let direct = DepTable::parse("n.ko: nf.ko\nnf.ko: f.ko\nf.ko:\n");
        let r = resolve(&direct, &[], &["n"]);
        assert_eq!(r.load_order, ["f.ko", "nf.ko", "n.ko"]);
        assert_eq!(
            dep_subset(&direct, &r.load_order),
            "f.ko:\nn.ko: nf.ko f.ko\nnf.ko: f.ko\n"
        );
    }

    #[test]
    fn cycles_do_not_loop() {
        let deps = DepTable::parse("a.ko: b.ko\nb.ko: a.ko\n");
        let r = resolve(&deps, &[], &["a"]);
        assert_eq!(r.load_order, ["b.ko", "a.ko"]);
    }
}
