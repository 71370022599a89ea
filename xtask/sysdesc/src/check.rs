//! The rules a system description must follow, checked over the located values the schema
//! reader produced. Every broken rule becomes a diagnostic; nothing stops at the first.

use super::admin::{self, Admin};
use super::channels::{self, Channel};
use super::diagnostics::Diagnostics;
use super::gui::{self, GuiLink};
use super::linux::{self, Linux};
use super::network::{self, Plan};
use super::schema::{Raw, Section};
use super::storage::{self, StorageLink};
use super::{
    HYPERVISOR_RESERVE_MIB, cpus, devices, disposables, fields, framebuffer, hints, policy, ports,
    qrexec, shadow,
};
use bulkhead_abi::boot_info::NAME_MAX;
use bulkhead_abi::io_ports::PortRange;
use bulkhead_abi::label::Label;
use bulkhead_abi::manifest::{
    IommuPolicy, MAX_QUBE_MEMORY_MIB, MAX_QUBES, MIN_QUBE_MEMORY_MIB, PciSelect,
    QUBE_MEMORY_GRANULE_MIB, QubeKind, RestartPolicy, StartPolicy,
};
use std::ops::Range;

/// A qube whose every field follows the rules.
pub(super) struct Qube {
    pub name: String,
    /// The unikernel image (empty for a Linux qube).
    pub image: String,
    pub memory_mib: u32,
    pub label: Label,
    pub restart: RestartPolicy,
    /// The unikernel's arguments (empty for a Linux qube).
    pub args: String,
    pub start: StartPolicy,
    /// The CPUs it may run on (bit `n`: CPU `n`); 0: any.
    pub cpus: u32,
    /// How many virtual CPUs it has (1 for a unikernel).
    pub vcpus: u8,
    /// What a Linux qube (`kind = "linux"`) adds; `None` for a unikernel.
    pub linux: Option<Linux>,
}

/// A description that follows every rule.
pub(super) struct Checked {
    pub name: String,
    pub ram_mib: u32,
    pub qubes: Vec<Qube>,
    /// The channels, declared ones first, then those the netvms make; their endpoints are
    /// indices of `qubes`.
    pub channels: Vec<Channel>,
    /// The assigned devices, as (qube index, device), in qube order.
    pub devices: Vec<(usize, PciSelect)>,
    /// The I/O ports given to unikernels, as (qube index, ports), in qube order.
    pub ports: Vec<(usize, PortRange)>,
    /// The unikernel given the firmware's framebuffer, if any (index of `qubes`).
    pub framebuffer: Option<usize>,
    pub iommu: IommuPolicy,
    /// Netvms, addresses and firewall rules.
    pub network: Plan,
    /// The qubes that show windows through a gui qube.
    pub gui: Vec<GuiLink>,
    /// The qubes with a private volume on a storage qube's disk.
    pub storage: Vec<StorageLink>,
    /// The admin qube, tags and default disposables.
    pub admin: Admin,
    /// The compiled `[[policy]]` tables.
    pub policy: bulkhead_policy::Table,
}

/// What is wrong with a qube or system name, and a fix, if anything.
pub(super) fn name_problem(name: &str) -> Option<(String, String)> {
    let fix = hints::valid_name_like(name, NAME_MAX);
    let chars_ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !chars_ok {
        let message = format!("{} is not a valid name", hints::quoted(name));
        let hint = format!("names start with a-z and use only a-z, 0-9 and -; try \"{fix}\"");
        Some((message, hint))
    } else if name.len() > NAME_MAX {
        let message = format!("name is {} bytes long, at most {NAME_MAX} fit", name.len());
        Some((message, format!("shorten it, e.g. \"{fix}\"")))
    } else {
        None
    }
}

/// Checks `raw`; `stem` is the file stem, the system's name when `[system]` gives none.
/// Returns the checked description when no rule is broken and `diags` is empty. What is
/// allowed but likely a mistake (a policy entry that can never match) goes to `warnings`.
pub(super) fn check(
    raw: &Raw,
    stem: &str,
    text: &str,
    diags: &mut Diagnostics,
    warnings: &mut Diagnostics,
) -> Option<Checked> {
    let system = check_system(raw, stem, text, diags);
    if too_many_qubes(raw, text, diags) {
        // Every other rule is about the qubes: with more than fit, their problems would
        // bury this one (and cost time in proportion to a file of any size).
        return None;
    }
    let qubes = check_qubes(raw, text, diags);
    let devices = devices::check(raw, text, diags);
    let ports = ports::check(raw, text, diags);
    let framebuffer = framebuffer::check(raw, text, diags);
    let params = network::params(raw, text, diags);
    let mut links = network::links(raw, text, diags);
    linux::network(raw, &links, text, diags);
    let mut automatic = std::mem::take(&mut links.automatic);
    automatic.extend(disposables::channels(raw, text, diags).0);
    let (gui_channels, gui) = gui::links(raw, text, diags);
    automatic.extend(gui_channels);
    let (admin, admin_ok) = admin::check(raw, text, diags);
    automatic.extend(qrexec::channels(raw, &admin, text, diags));
    let (block_channels, storage) = storage::links(raw, text, diags);
    automatic.extend(block_channels);
    let channels = channels::check(raw, automatic, text, diags);
    let policy = policy::check(raw, &admin, text, diags);
    if let Some(table) = &policy {
        shadow::warn(raw, table, &admin.facts(), text, warnings);
    }
    let plan = network::plan(raw, &links, params, text, diags);
    if let (Some((_, ram_mib, ram_span, _)), Some(qubes)) = (&system, &qubes) {
        check_ram(*ram_mib, ram_span.clone(), qubes, channels.kib, text, diags);
    }
    let (name, ram_mib, _, iommu) = system?;
    let qubes = qubes?.into_iter().collect::<Option<Vec<Qube>>>()?;
    admin_ok.then_some(())?;
    diags.is_empty().then_some(Checked {
        name,
        ram_mib,
        qubes,
        channels: channels.list?,
        devices: devices?,
        ports: ports?,
        framebuffer: framebuffer?,
        iommu,
        network: plan?,
        gui,
        storage,
        admin,
        policy: policy?,
    })
}

type SystemParts = (String, u32, Range<usize>, IommuPolicy);

/// `[system]`: its name (or the file stem), the machine's RAM and the IOMMU policy.
fn check_system(raw: &Raw, stem: &str, text: &str, diags: &mut Diagnostics) -> Option<SystemParts> {
    let Some(sys) = &raw.system else {
        let hint = "add a [system] table with ram_mib = 256 (the machine's RAM in MiB)";
        diags.push(text, Some(0..0), "system", "missing [system] table", hint);
        return None;
    };
    let name = match sys.text("name") {
        Some((name, span)) => match name_problem(name) {
            Some((message, hint)) => diags.fail(text, Some(span), sys.key("name"), message, hint),
            None => Some(name.to_string()),
        },
        None if !sys.absent("name") => None,
        None => match name_problem(stem) {
            Some((message, hint)) => {
                let message = format!("the file name gives no valid system name: {message}");
                let hint = format!("set name under [system] ({hint}), or rename the file");
                diags.push(text, sys.span.clone(), sys.key("name"), message, hint);
                None
            }
            None => Some(stem.to_string()),
        },
    };
    let ram = match sys.number("ram_mib") {
        Some((n, span)) => match u32::try_from(n) {
            Ok(n) if n > 0 => Some((n, span)),
            _ => {
                let message = format!("{n} MiB of RAM is not possible");
                let hint = format!("use a positive number up to {}, e.g. 256", u32::MAX);
                diags.push(text, Some(span), sys.key("ram_mib"), message, hint);
                None
            }
        },
        None => {
            if sys.absent("ram_mib") {
                let hint = "add ram_mib = 256 (the machine's RAM in MiB, as QEMU's -m)";
                diags.push(
                    text,
                    sys.span.clone(),
                    sys.key("ram_mib"),
                    "missing ram_mib",
                    hint,
                );
            }
            None
        }
    };
    let iommu = devices::iommu(sys, text, diags);
    let (ram, span) = ram?;
    Some((name?, ram, span, iommu?))
}

/// The qubes: count, names, and every field of each. `None` when a count rule is broken;
/// `Some(None)` entries are qubes with a broken field.
fn check_qubes(raw: &Raw, text: &str, diags: &mut Diagnostics) -> Option<Vec<Option<Qube>>> {
    if raw.qubes.items.is_empty() {
        if !raw.qubes.malformed {
            let hint = "add a [[qube]] table with name, kind, image, memory_mib and label";
            diags.push(
                text,
                raw.qubes.span.clone().or(Some(0..0)),
                "qube",
                "no qubes",
                hint,
            );
        }
        return None;
    }
    let mut qubes = Vec::new();
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for q in &raw.qubes.items {
        let name = q.text("name").and_then(|(name, span)| {
            if let Some((message, hint)) = name_problem(name) {
                return diags.fail(text, Some(span), q.key("name"), message, hint);
            }
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
                let message = format!("a second qube is called \"{name}\"");
                let hint =
                    format!("another qube ({first}) is already called \"{name}\"; rename one");
                return diags.fail(text, Some(span), q.key("name"), message, hint);
            }
            seen.push((name, &q.path));
            Some(name.to_string())
        });
        if q.absent("name") {
            let hint = "add name = \"...\" (a-z, 0-9 and -, unique)";
            diags.push(text, q.span.clone(), q.key("name"), "missing name", hint);
        }
        qubes.push(check_fields(q, name, text, diags));
    }
    Some(qubes)
}

/// Whether the description has more qubes than fit (reported once, at the first one too
/// many).
fn too_many_qubes(raw: &Raw, text: &str, diags: &mut Diagnostics) -> bool {
    let count = raw.qubes.items.len();
    let Some(extra) = raw.qubes.items.get(MAX_QUBES) else {
        return false;
    };
    let message = format!("{count} qubes, at most {MAX_QUBES} fit");
    let hint = format!(
        "remove {} qube(s); the other checks run once the qubes fit",
        count - MAX_QUBES
    );
    diags.push(text, extra.span.clone(), extra.path.clone(), message, hint);
    true
}

/// Every field of one qube (`name` when its name is right), by its kind.
fn check_fields(
    q: &Section,
    name: Option<String>,
    text: &str,
    diags: &mut Diagnostics,
) -> Option<Qube> {
    let kind = fields::kind(q, text, diags);
    let is_linux = matches!(kind, Some(QubeKind::Linux { .. }));
    let own_keys = kind.is_none_or(|k| linux::foreign_keys(q, k, text, diags));
    let image = match is_linux {
        true => Some(String::new()),
        false => fields::image(q, text, diags),
    };
    let memory_mib = fields::memory(q, text, diags);
    let label = fields::label(q, text, diags);
    let restart = fields::restart(q, text, diags);
    let args = match is_linux {
        true => Some(String::new()),
        false => fields::args(q, text, diags),
    };
    let linux = match is_linux {
        true => linux::fields(q, memory_mib, text, diags).map(Some),
        false => Some(None),
    };
    let start = linux::start(q, restart, text, diags);
    let cpus = cpus::mask(q, text, diags);
    let vcpus = cpus::vcpus(q, kind, text, diags);
    own_keys.then_some(())?;
    kind?;
    Some(Qube {
        name: name?,
        image: image?,
        memory_mib: memory_mib?,
        label: label?,
        restart: restart?,
        args: args?,
        start: start?,
        cpus: cpus?,
        vcpus: vcpus?,
        linux: linux?,
    })
}

/// The qubes' memory, the channels' (`channel_kib` KiB) and the hypervisor's reserve must fit
/// the machine's RAM.
fn check_ram(
    ram_mib: u32,
    span: Range<usize>,
    qubes: &[Option<Qube>],
    channel_kib: u64,
    text: &str,
    diags: &mut Diagnostics,
) {
    let Some(qubes) = qubes
        .iter()
        .map(Option::as_ref)
        .collect::<Option<Vec<&Qube>>>()
    else {
        return;
    };
    let used: u64 = qubes.iter().map(|q| u64::from(q.memory_mib)).sum();
    let need_kib = (used + u64::from(HYPERVISOR_RESERVE_MIB)) * 1024 + channel_kib;
    let ram_kib = u64::from(ram_mib) * 1024;
    if need_kib <= ram_kib {
        return;
    }
    let need = hints::kib(need_kib);
    let over = hints::kib(need_kib - ram_kib);
    let channels = if channel_kib == 0 {
        String::new()
    } else {
        format!(" + {} of channels", hints::kib(channel_kib))
    };
    let message = format!(
        "qubes need {used} MiB{channels} + {HYPERVISOR_RESERVE_MIB} MiB hypervisor reserve = \
         {need}, {over} more than ram_mib = {ram_mib}"
    );
    let largest = qubes
        .iter()
        .max_by_key(|q| q.memory_mib)
        .map_or(String::new(), |q| {
            format!(" (the largest is \"{}\" with {} MiB)", q.name, q.memory_mib)
        });
    let raise = need_kib.div_ceil(1024);
    let hint = if channel_kib == 0 {
        format!("raise ram_mib to {raise} or more, or give qubes less memory{largest}")
    } else {
        format!(
            "raise ram_mib to {raise} or more, give qubes less memory{largest}, or make \
             channels smaller"
        )
    };
    diags.push(text, Some(span), "system.ram_mib", message, hint);
}

/// The allowed memory sizes nearest to `mib`, for a hint.
pub(super) fn memory_choices(mib: i128) -> String {
    let g = i128::from(QUBE_MEMORY_GRANULE_MIB);
    let (min, max) = (
        i128::from(MIN_QUBE_MEMORY_MIB),
        i128::from(MAX_QUBE_MEMORY_MIB),
    );
    let below = (mib.div_euclid(g) * g).clamp(min, max);
    let above = ((mib.div_euclid(g) + 1) * g).clamp(min, max);
    if below == above {
        format!("use {below}")
    } else {
        format!("use {below} or {above}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(name_problem("net").is_none());
        assert!(name_problem("sys-net2").is_none());
        for bad in ["", "Net", "2net", "-net", "net_vm", "net vm", "né"] {
            assert!(name_problem(bad).is_some(), "{bad}");
        }
        assert!(name_problem(&"a".repeat(NAME_MAX)).is_none());
        assert!(name_problem(&"a".repeat(NAME_MAX + 1)).is_some());
    }

    #[test]
    fn memory_hints() {
        assert_eq!(memory_choices(9), "use 8 or 10");
        assert_eq!(memory_choices(3), "use 4");
        assert_eq!(memory_choices(5000), "use 4096");
    }
}
