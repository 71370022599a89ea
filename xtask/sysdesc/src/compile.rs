//! Turning a checked description into the binary manifest, the bundle's image list and the
//! qubes' configuration blobs, and describing the result for people.

use super::check::Checked;
use super::layout::{self, Numbering, entry_name};
use super::storage::LinkVolume;
use super::{
    CompiledSystem, ConfigBlob, HYPERVISOR_RESERVE_MIB, devices, hints, ip, network, ports,
};
use bulkhead_abi::bundle::MAX_ENTRIES;
use bulkhead_abi::channel::Geometry;
use bulkhead_abi::manifest::{
    ChannelSpec, DeviceSpec, IommuPolicy, MANIFEST_VERSION, Manifest, PortSpec, QubeKind, QubeSpec,
    StartPolicy,
};
use bulkhead_qubeconfig::{Action, Uplink};
use std::path::Path;

/// Builds the manifest, the configuration blobs and the Linux qubes' command lines, and
/// numbers the bundle entries as `layout` describes. Fails only if a checked value does not
/// fit the ABI, which the checks rule out.
pub(super) fn compile(checked: Checked, path: &Path) -> Result<CompiledSystem, String> {
    let names: Vec<String> = checked.qubes.iter().map(|q| q.name.clone()).collect();
    // A Linux qube reads its settings from its command line, not from a blob.
    let mut configs = network::configs(&checked.network, &names)?;
    gui_configs(&checked, &names, &mut configs)?;
    storage_configs(&checked, &names, &mut configs)?;
    super::qrexec::configs(&checked, &mut configs)?;
    configs.sort_by_key(|(qube, _)| *qube);
    let configs: Vec<ConfigBlob> = configs
        .into_iter()
        .filter(|(qube, _)| checked.qubes[*qube].linux.is_none())
        .map(|(qube, config)| ConfigBlob {
            qube,
            entry: entry_name(&names[qube], ".cfg"),
            bytes: config.to_vec(),
            config,
        })
        .collect();
    let cmdlines = layout::cmdlines(&checked)?;
    let mut images: Vec<String> = Vec::new();
    let mut templates: Vec<String> = Vec::new();
    let mut qubes = bulkhead_abi::bounded::BoundedVec::new();
    for q in &checked.qubes {
        let (list, name) = match &q.linux {
            None => (&mut images, &q.image),
            Some(l) => (&mut templates, &l.template),
        };
        if !list.contains(name) {
            list.push(name.clone());
        }
    }
    let n = Numbering {
        images: images.len(),
        templates: templates.len(),
        configs: configs.len(),
    };
    if n.cmdline(cmdlines.len()) > MAX_ENTRIES {
        return Err(format!(
            "{} images, {} templates, {} configuration blobs and {} command lines do not fit \
             a bundle of {MAX_ENTRIES} entries",
            images.len(),
            templates.len(),
            configs.len(),
            cmdlines.len()
        ));
    }
    let qube_entries = layout::qube_entries(&checked, n, &images, &templates, &configs, &cmdlines)?;
    let channel_ends = layout::channel_ends(&checked.channels);
    let volumes = checked
        .storage
        .iter()
        .filter_map(|l| match l.volume {
            LinkVolume::Private(mib) => Some(super::PrivateVolume {
                qube: names[l.client].clone(),
                storage: names[l.storage].clone(),
                mib,
            }),
            LinkVolume::TemplateRoot(_) => None,
        })
        .collect();
    let roots = checked
        .storage
        .iter()
        .filter_map(|l| match &l.volume {
            LinkVolume::TemplateRoot(template) => Some(super::TemplateRoot {
                qube: names[l.client].clone(),
                storage: names[l.storage].clone(),
                template: template.clone(),
            }),
            LinkVolume::Private(_) => None,
        })
        .collect();
    let entry = |i: usize| u16::try_from(i).map_err(|_| "too many entries".to_string());
    for (i, q) in checked.qubes.into_iter().enumerate() {
        let (kind, image) = match &q.linux {
            None => {
                let index = images
                    .iter()
                    .position(|i| *i == q.image)
                    .ok_or("image not listed")?;
                (QubeKind::Unikernel, n.image(index))
            }
            Some(l) => {
                let t = templates
                    .iter()
                    .position(|t| *t == l.template)
                    .ok_or("template not listed")?;
                let m = cmdlines
                    .iter()
                    .position(|c| c.qube == i)
                    .ok_or("command line not written")?;
                let kind = QubeKind::Linux {
                    initrd: entry(n.initrd(t))?,
                    cmdline: entry(n.cmdline(m))?,
                };
                (kind, n.kernel(t))
            }
        };
        let config = match configs.iter().position(|c| c.qube == i) {
            Some(k) => Some(entry(n.config(k))?),
            None => None,
        };
        let spec = QubeSpec {
            name: bulkhead_abi::bounded::BoundedString::try_from(q.name.as_str())
                .map_err(|_| format!("qube name {:?} does not fit", q.name))?,
            kind,
            image: entry(image)?,
            memory_mib: q.memory_mib,
            label: q.label,
            restart: q.restart,
            args: bulkhead_abi::bounded::BoundedString::try_from(q.args.as_str())
                .map_err(|_| format!("args of {:?} do not fit", q.name))?,
            config,
            start: q.start,
            framebuffer: checked.framebuffer == Some(i),
            admin: checked.admin.qube == Some(i),
            cpus: q.cpus,
            vcpus: q.vcpus,
        };
        qubes.push(spec).map_err(|_| "too many qubes".to_string())?;
    }
    let mut channels = bulkhead_abi::bounded::BoundedVec::new();
    for c in checked.channels {
        let index = |i: usize| {
            u8::try_from(i).map_err(|_| format!("endpoint of channel {:?} out of range", c.name))
        };
        let spec = ChannelSpec {
            name: bulkhead_abi::bounded::BoundedString::try_from(c.name.as_str())
                .map_err(|_| format!("channel name {:?} does not fit", c.name))?,
            a: index(c.a)?,
            b: index(c.b)?,
            size: c.size,
            slot_size: c.slot_size,
            bulk_size: c.bulk_size,
            purpose: bulkhead_abi::bounded::BoundedString::try_from(c.purpose.as_str())
                .map_err(|_| format!("purpose of channel {:?} does not fit", c.name))?,
        };
        channels
            .push(spec)
            .map_err(|_| "too many channels".to_string())?;
    }
    let system = bulkhead_abi::bounded::BoundedString::try_from(checked.name.as_str())
        .map_err(|_| format!("system name {:?} does not fit", checked.name))?;
    let mut devices = bulkhead_abi::bounded::BoundedVec::new();
    for (qube, select) in checked.devices {
        let qube = u8::try_from(qube).map_err(|_| "device owner out of range".to_string())?;
        devices
            .push(DeviceSpec { qube, select })
            .map_err(|_| "too many devices".to_string())?;
    }
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        system,
        qubes,
        channels,
        devices,
        iommu: checked.iommu,
        ports: bulkhead_abi::bounded::BoundedVec::try_from_iter(checked.ports.iter().map(
            |&(qube, ports)| PortSpec {
                qube: qube as u8,
                ports,
            },
        ))
        .ok_or("too many I/O port ranges")?,
    };
    let network = checked.network;
    let networked = network.netvm.iter().any(Option::is_some);
    Ok(CompiledSystem {
        manifest,
        images,
        templates,
        configs,
        cmdlines,
        qube_entries,
        channel_ends,
        network: networked.then_some(network.params),
        volumes,
        roots,
        ram_mib: checked.ram_mib,
        path: path.to_path_buf(),
        warnings: Vec::new(),
    })
}

/// The name of a kind, as written in descriptions.
pub(super) fn kind_name(kind: QubeKind) -> &'static str {
    match kind {
        QubeKind::Unikernel => "unikernel",
        QubeKind::Linux { .. } => "linux",
    }
}

/// Rows as a table: columns padded to their widest cell, two spaces apart, each cell
/// [`escaped`](super::diagnostics::escaped) (a purpose may hold direction marks).
pub(super) fn table(rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|c| super::diagnostics::escaped(c)).collect())
        .collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &rows {
        widths.resize(widths.len().max(row.len()), 0);
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A table of the qubes and one of the channels, with the memory budget and the bundle order.
pub(super) fn summary(c: &CompiledSystem) -> String {
    let m = &c.manifest;
    let used: u64 = m.qubes.iter().map(|q| u64::from(q.memory_mib)).sum();
    let channel_kib: u64 = m
        .channels
        .iter()
        .map(|ch| (u64::from(ch.size) + u64::from(ch.bulk_size)) / 1024)
        .sum();
    let free = (u64::from(c.ram_mib) * 1024)
        .saturating_sub((used + u64::from(HYPERVISOR_RESERVE_MIB)) * 1024 + channel_kib);
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let (count, memory) = if m.channels.is_empty() {
        (plural(m.qubes.len(), "qube"), format!("{used} MiB"))
    } else {
        (
            format!(
                "{} and {}",
                plural(m.qubes.len(), "qube"),
                plural(m.channels.len(), "channel")
            ),
            format!("{used} MiB + {} of channels", hints::kib(channel_kib)),
        )
    };
    let mut out = format!(
        "system \"{}\" ({}): {count}, {memory} of {} MiB RAM \
         (+{HYPERVISOR_RESERVE_MIB} MiB hypervisor reserve, {} free)\n\n",
        m.system,
        super::diagnostics::escaped(&c.path.display().to_string()),
        c.ram_mib,
        hints::kib(free),
    );
    let mut rows = vec![
        [
            "name", "kind", "image", "memory", "label", "restart", "start", "args",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let numbering = c.numbering();
    for (i, q) in m.qubes.iter().enumerate() {
        let image = match q.kind {
            QubeKind::Unikernel => c.images.get(usize::from(q.image).wrapping_sub(1)),
            QubeKind::Linux { .. } => c
                .templates
                .iter()
                .enumerate()
                .find(|(t, _)| numbering.kernel(*t) == usize::from(q.image))
                .map(|(_, name)| name),
        }
        .map_or("?", |s| s);
        let args = match q.kind {
            QubeKind::Unikernel => q.args.as_str(),
            QubeKind::Linux { .. } => c
                .cmdlines
                .iter()
                .find(|l| l.qube == i)
                .map_or("", |l| l.kernel_args.as_str()),
        };
        rows.push(vec![
            q.name.to_string(),
            kind_name(q.kind).to_string(),
            format!("{image} #{}", q.image),
            format!("{} MiB", q.memory_mib),
            q.label.name().to_string(),
            q.restart.name().to_string(),
            match q.start {
                StartPolicy::AtBoot => "at boot",
                StartPolicy::OnRequest => "on request",
            }
            .to_string(),
            if args.is_empty() {
                "-".to_string()
            } else {
                format!("{args:?}")
            },
        ]);
    }
    out.push_str(&table(&rows));
    if !m.channels.is_empty() {
        // The bulk column only when some channel has a bulk area.
        let bulk = m.channels.iter().any(|ch| ch.bulk_size != 0);
        let mut header = vec![
            "channel",
            "side A (index)",
            "side B (index)",
            "size",
            "slots per ring",
            "largest message",
        ];
        if bulk {
            header.push("bulk area");
        }
        header.push("purpose");
        let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
        let qube = |i: u8| {
            m.qubes
                .get(usize::from(i))
                .map_or("?".to_string(), |q| q.name.to_string())
        };
        // Each side with the channel's index in its boot-info channel table.
        let end = |q: u8, e: Option<layout::End>| match e {
            Some(e) => format!("{} ({})", qube(q), e.local),
            None => qube(q),
        };
        for (k, ch) in m.channels.iter().enumerate() {
            let geometry = Geometry::new(u64::from(ch.size), ch.slot_size);
            let ends = c.channel_ends.get(k);
            let mut row = vec![
                ch.name.to_string(),
                end(ch.a, ends.map(|e| e.a)),
                end(ch.b, ends.map(|e| e.b)),
                hints::kib(u64::from(ch.size) / 1024),
                geometry.map_or("?".to_string(), |g| {
                    format!("{} x {} B", g.slot_count, g.slot_size)
                }),
                geometry.map_or("?".to_string(), |g| format!("{} B", g.max_payload())),
            ];
            if bulk {
                row.push(match ch.bulk_size {
                    0 => "-".to_string(),
                    n => format!("2 x {}", hints::kib(u64::from(n) / 2048)),
                });
            }
            row.push(ch.purpose.to_string());
            rows.push(row);
        }
        out.push('\n');
        out.push_str(&table(&rows));
    }
    out.push_str(&network_summary(c));
    out.push_str(&super::qrexec::summary(c));
    out.push_str(&ports_summary(c));
    out.push_str(&storage_summary(c));
    out.push_str(&super::cpus::summary(&c.manifest));
    if let Some(q) = c.manifest.qubes.iter().find(|q| q.framebuffer) {
        out.push_str(&format!(
            "\nFramebuffer: {} maps the firmware's framebuffer, if the boot loader leaves one\n",
            q.name
        ));
    }
    let bundle: Vec<String> = c
        .entries()
        .iter()
        .map(|e| match e.content {
            layout::Content::Bytes(b) => format!("#{} {} ({} bytes)", e.index, e.name, b.len()),
            _ => format!("#{} {}", e.index, e.name),
        })
        .collect();
    out.push_str(&format!(
        "\nbundle: #0 manifest ({} bytes, version {}), {}",
        m.to_vec().len(),
        m.version,
        bundle.join(", ")
    ));
    if !c.warnings.is_empty() {
        out.push('\n');
    }
    for w in &c.warnings {
        out.push_str(&format!("\nwarning: {w}"));
    }
    out
}

/// What a networked Linux qube's uplink is (it has no blob; its command line says the
/// same): the channel `<qube>.net` and the address its netvm's blob gives it.
fn linux_uplink(c: &CompiledSystem, i: usize) -> Option<Uplink> {
    let m = &c.manifest;
    let q = m.qubes.get(i)?;
    if q.kind == QubeKind::Unikernel {
        return None;
    }
    let channel = network::channel_name(&q.name);
    let ch = m.channels.iter().find(|ch| ch.name.as_str() == channel)?;
    let netvm = c.configs.iter().find(|b| b.qube == usize::from(ch.a))?;
    let down = netvm
        .config
        .downstream
        .iter()
        .find(|d| d.qube.as_str() == q.name.as_str())?;
    let params = c.network.as_ref()?;
    Some(Uplink {
        channel: heapless::String::try_from(ch.name.as_str()).ok()?,
        address: down.address,
        prefix_len: params.clients.prefix_len,
        gateway: params.gateway,
        dns: heapless::Vec::from_slice(&params.dns).ok()?,
    })
}

/// The blob of `qube` among `configs`, made empty if it has none yet.
pub(super) fn config_of(
    configs: &mut Vec<(usize, bulkhead_qubeconfig::QubeConfig)>,
    qube: usize,
) -> &mut bulkhead_qubeconfig::QubeConfig {
    let at = match configs.iter().position(|(q, _)| *q == qube) {
        Some(at) => at,
        None => {
            configs.push((qube, bulkhead_qubeconfig::QubeConfig::empty()));
            configs.len() - 1
        }
    };
    &mut configs[at].1
}

/// `s` as a name in a blob; fails only if it does not fit, which the checks rule out.
pub(super) fn blob_name<const N: usize>(s: &str) -> Result<heapless::String<N>, String> {
    heapless::String::try_from(s).map_err(|_| format!("name {s:?} does not fit the blob"))
}

/// Adds the GUI parts to the blobs (making blobs where a qube has none yet): each gui
/// qube's clients and clipboard policy, each client's GUI channel.
fn gui_configs(
    checked: &Checked,
    names: &[String],
    configs: &mut Vec<(usize, bulkhead_qubeconfig::QubeConfig)>,
) -> Result<(), String> {
    use bulkhead_qubeconfig::{GuiClient, GuiServer};
    for link in &checked.gui {
        config_of(configs, link.client).gui_channel =
            Some(blob_name(&super::gui::channel_name(&names[link.client]))?);
        let of_gui: Vec<&super::gui::GuiLink> =
            checked.gui.iter().filter(|l| l.gui == link.gui).collect();
        let position = |qube: usize| of_gui.iter().position(|l| l.client == qube);
        let server = config_of(configs, link.gui).gui.get_or_insert(GuiServer {
            clients: heapless::Vec::new(),
            clipboard_deny: heapless::Vec::new(),
        });
        let me = server.clients.len() as u8;
        server
            .clients
            .push(GuiClient {
                qube: blob_name(&names[link.client])?,
                channel: blob_name(&super::gui::channel_name(&names[link.client]))?,
                label: checked.qubes[link.client].label as u8,
                max_width: link.window.0,
                max_height: link.window.1,
            })
            .map_err(|_| {
                format!(
                    "more than {} qubes show windows",
                    bulkhead_qubeconfig::MAX_GUI_CLIENTS
                )
            })?;
        for to in link.deny.iter().filter_map(|q| position(*q)) {
            server
                .clipboard_deny
                .push((me, to as u8))
                .map_err(|_| "too many clipboard_deny pairs".to_string())?;
        }
    }
    Ok(())
}

/// Adds the storage parts to the blobs (making blobs where a qube has none yet): each
/// storage qube's clients with their volume sizes, each client's block channel.
fn storage_configs(
    checked: &Checked,
    names: &[String],
    configs: &mut Vec<(usize, bulkhead_qubeconfig::QubeConfig)>,
) -> Result<(), String> {
    use bulkhead_qubeconfig::{ClientVolume, MAX_STORAGE_CLIENTS, StorageClient, StorageServer};
    for link in &checked.storage {
        let client = &names[link.client];
        let (channel, volume) = match &link.volume {
            LinkVolume::Private(mib) => {
                let channel = blob_name(&super::storage::channel_name(client))?;
                config_of(configs, link.client).block_channel = Some(channel.clone());
                (channel, ClientVolume::Private { mib: *mib })
            }
            LinkVolume::TemplateRoot(template) => (
                blob_name(&super::storage::root_channel_name(client))?,
                ClientVolume::TemplateRoot {
                    template: blob_name(template)?,
                },
            ),
        };
        let server = config_of(configs, link.storage)
            .storage
            .get_or_insert(StorageServer {
                clients: heapless::Vec::new(),
            });
        server
            .clients
            .push(StorageClient {
                qube: blob_name(client)?,
                channel,
                volume,
            })
            .map_err(|_| {
                format!(
                    "{} serves more than {MAX_STORAGE_CLIENTS} block channels (private \
                     volumes and template roots)",
                    names[link.storage]
                )
            })?;
    }
    Ok(())
}

/// The private volumes, one line per storage qube.
fn storage_summary(c: &CompiledSystem) -> String {
    let mut out = String::new();
    let mut storages: Vec<&str> = Vec::new();
    for v in &c.volumes {
        if !storages.contains(&v.storage.as_str()) {
            storages.push(&v.storage);
        }
    }
    for s in storages {
        let mine: Vec<String> = c
            .volumes
            .iter()
            .filter(|v| v.storage == s)
            .map(|v| format!("{} {} MiB", v.qube, v.mib))
            .collect();
        let total: u64 = c
            .volumes
            .iter()
            .filter(|v| v.storage == s)
            .map(|v| u64::from(v.mib))
            .sum();
        out.push_str(&format!(
            "
Private volumes on {s}'s disk ({total} MiB): {}
",
            mine.join(", ")
        ));
    }
    let mut templates: Vec<(&str, &str)> = Vec::new();
    for r in &c.roots {
        if !templates.contains(&(r.storage.as_str(), r.template.as_str())) {
            templates.push((&r.storage, &r.template));
        }
    }
    for (s, t) in templates {
        let qubes: Vec<&str> = c
            .roots
            .iter()
            .filter(|r| r.storage == s && r.template == t)
            .map(|r| r.qube.as_str())
            .collect();
        out.push_str(&format!(
            "Template root {t} on {s}'s disk (one read-only volume, checked by dm-verity), \
             booted by {}\n",
            qubes.join(", ")
        ));
    }
    out
}

/// The I/O ports each qube owns, one line per qube; a qube with port 0x64 (the i8042's
/// command port) is said to be able to reset the machine.
fn ports_summary(c: &CompiledSystem) -> String {
    let m = &c.manifest;
    let mut out = String::new();
    for (i, q) in m.qubes.iter().enumerate() {
        let mine: Vec<_> = m
            .ports
            .iter()
            .filter(|p| usize::from(p.qube) == i)
            .map(|p| p.ports)
            .collect();
        if mine.is_empty() {
            continue;
        }
        if out.is_empty() {
            out.push('\n');
        }
        let reset = if mine.iter().any(|r| r.contains(0x64)) {
            " (0x64 is the i8042 controller's command port: it can reset the machine)"
        } else {
            ""
        };
        out.push_str(&format!(
            "I/O ports of {}: {}, passed through; every other port traps{reset}\n",
            q.name,
            ports::show(&mine)
        ));
    }
    out
}

/// The network and the devices: the client network, then per qube with a netvm, clients or
/// devices: its netvm, its role, its address, its firewall rules and its devices; then the
/// IOMMU policy. Empty when no qube has any of these.
fn network_summary(c: &CompiledSystem) -> String {
    let m = &c.manifest;
    let name = |i: usize| m.qubes.get(i).map_or("?", |q| q.name.as_str());
    let config_of = |i: usize| c.configs.iter().find(|b| b.qube == i).map(|b| &b.config);
    let mut rows = vec![
        [
            "qube",
            "netvm",
            "role",
            "address",
            "firewall rules",
            "devices",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (i, q) in m.qubes.iter().enumerate() {
        let devices: Vec<String> = m
            .devices
            .iter()
            .filter(|d| usize::from(d.qube) == i)
            .map(|d| devices::show(&d.select))
            .collect();
        // A blob without network parts (a gui or admin qube's) is not a row of its own.
        let config = config_of(i).filter(|cfg| cfg.uplink.is_some() || !cfg.downstream.is_empty());
        let linux_uplink = linux_uplink(c, i);
        if config.is_none() && devices.is_empty() && linux_uplink.is_none() {
            continue;
        }
        let uplink = config
            .and_then(|cfg| cfg.uplink.as_ref())
            .or(linux_uplink.as_ref());
        let clients = config.map_or(0, |cfg| cfg.downstream.len());
        // The netvm is side A of the uplink channel.
        let netvm = uplink.and_then(|u| {
            m.channels
                .iter()
                .find(|ch| ch.name.as_str() == u.channel.as_str())
                .map(|ch| name(usize::from(ch.a)))
        });
        let plural = if clients == 1 { "" } else { "s" };
        let role = match (uplink.is_some(), clients) {
            (_, 0) if uplink.is_some() => "client".to_string(),
            (_, 0) => "-".to_string(),
            (true, n) => format!("router for {n} qube{plural}"),
            (false, n) => format!("card owner, bridge to {n} qube{plural}"),
        };
        let address = match (uplink, netvm) {
            (Some(u), _) if u.address.is_some() => {
                let a = u.address.map_or(String::new(), ip::show);
                format!("{a}/{}", u.prefix_len)
            }
            (Some(_), Some(n)) => format!("DHCP lease of {n}"),
            _ if clients > 0 => "DHCP on the card".to_string(),
            _ => "-".to_string(),
        };
        // The rules live in the netvm's blob, under this qube.
        let rules = netvm
            .and_then(|n| m.qubes.iter().position(|q| q.name == n))
            .and_then(config_of)
            .and_then(|cfg| {
                cfg.downstream
                    .iter()
                    .find(|d| d.qube.as_str() == q.name.as_str())
            })
            .filter(|d| d.address.is_some())
            .map_or("-".to_string(), |d| match d.rules.last() {
                None => "none: accept all".to_string(),
                Some(last) => format!(
                    "{} rule{}, then {}",
                    d.rules.len(),
                    if d.rules.len() == 1 { "" } else { "s" },
                    match last.action {
                        Action::Accept => "accept",
                        Action::Drop => "drop",
                    }
                ),
            });
        rows.push(vec![
            q.name.to_string(),
            netvm.unwrap_or("-").to_string(),
            role,
            address,
            rules,
            if devices.is_empty() {
                "-".to_string()
            } else {
                devices.join(" ")
            },
        ]);
    }
    if rows.len() == 1 {
        return String::new();
    }
    let mut out = String::from("\n");
    if let Some(p) = &c.network {
        out.push_str(&format!("network: {}\n", p.describe()));
    }
    out.push_str(&table(&rows));
    if !m.devices.is_empty() {
        let count = m.devices.len();
        let policy = match m.iommu {
            IommuPolicy::Required => {
                "assigned only behind an IOMMU (iommu = \"required\")".to_string()
            }
            IommuPolicy::AcceptRisk => format!(
                "assigned even without an IOMMU (iommu = \"{}\"): there, a device can read \
                 and write all memory",
                devices::IOMMU_ACCEPT_RISK
            ),
        };
        out.push_str(&format!(
            "{count} device{} {policy}\n",
            if count == 1 { "" } else { "s" }
        ));
    }
    out
}
