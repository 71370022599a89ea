//! Turning a checked description into the binary manifest and the bundle's image list, and
//! describing the result for people.

use super::check::Checked;
use super::{CompiledSystem, HYPERVISOR_RESERVE_MIB, hints};
use bulkhead_abi::channel::Geometry;
use bulkhead_abi::manifest::{ChannelSpec, MANIFEST_VERSION, Manifest, QubeKind, QubeSpec};
use std::path::Path;

/// Builds the manifest. Images are numbered in order of first use, from 1 (entry 0 of the
/// bundle is the manifest itself). Fails only if a checked value does not fit the ABI, which
/// the checks rule out.
pub(super) fn compile(checked: Checked, path: &Path) -> Result<CompiledSystem, String> {
    let mut images: Vec<String> = Vec::new();
    let mut qubes = heapless::Vec::new();
    for q in checked.qubes {
        let index = match images.iter().position(|i| *i == q.image) {
            Some(i) => i,
            None => {
                images.push(q.image.clone());
                images.len() - 1
            }
        };
        let spec = QubeSpec {
            name: heapless::String::try_from(q.name.as_str())
                .map_err(|_| format!("qube name {:?} does not fit", q.name))?,
            kind: q.kind,
            image: u16::try_from(index + 1).map_err(|_| "too many images".to_string())?,
            memory_mib: q.memory_mib,
            label: q.label,
            restart: q.restart,
            args: heapless::String::try_from(q.args.as_str())
                .map_err(|_| format!("args of {:?} do not fit", q.name))?,
            config: None,
        };
        qubes.push(spec).map_err(|_| "too many qubes".to_string())?;
    }
    let mut channels = heapless::Vec::new();
    for c in checked.channels {
        let index = |i: usize| {
            u8::try_from(i).map_err(|_| format!("endpoint of channel {:?} out of range", c.name))
        };
        let spec = ChannelSpec {
            name: heapless::String::try_from(c.name.as_str())
                .map_err(|_| format!("channel name {:?} does not fit", c.name))?,
            a: index(c.a)?,
            b: index(c.b)?,
            size: c.size,
            slot_size: c.slot_size,
            purpose: heapless::String::try_from(c.purpose.as_str())
                .map_err(|_| format!("purpose of channel {:?} does not fit", c.name))?,
        };
        channels
            .push(spec)
            .map_err(|_| "too many channels".to_string())?;
    }
    let system = heapless::String::try_from(checked.name.as_str())
        .map_err(|_| format!("system name {:?} does not fit", checked.name))?;
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        system,
        qubes,
        channels,
        devices: heapless::Vec::new(),
        iommu: bulkhead_abi::manifest::IommuPolicy::Required,
    };
    Ok(CompiledSystem {
        manifest,
        images,
        ram_mib: checked.ram_mib,
        path: path.to_path_buf(),
    })
}

/// The name of a kind, as written in descriptions.
pub(super) fn kind_name(kind: QubeKind) -> &'static str {
    match kind {
        QubeKind::Unikernel => "unikernel",
    }
}

/// Rows as a table: columns padded to their widest cell, two spaces apart.
fn table(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        widths.resize(widths.len().max(row.len()), 0);
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
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
    let channel_kib: u64 = m.channels.iter().map(|ch| u64::from(ch.size) / 1024).sum();
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
        c.path.display(),
        c.ram_mib,
        hints::kib(free),
    );
    let mut rows = vec![
        [
            "name", "kind", "image", "memory", "label", "restart", "args",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for q in &m.qubes {
        let image = c
            .images
            .get(usize::from(q.image).wrapping_sub(1))
            .map_or("?", |s| s);
        rows.push(vec![
            q.name.to_string(),
            kind_name(q.kind).to_string(),
            format!("{image} #{}", q.image),
            format!("{} MiB", q.memory_mib),
            q.label.name().to_string(),
            q.restart.name().to_string(),
            if q.args.is_empty() {
                "-".to_string()
            } else {
                format!("{:?}", q.args.as_str())
            },
        ]);
    }
    out.push_str(&table(&rows));
    if !m.channels.is_empty() {
        let mut rows = vec![
            [
                "channel",
                "side A",
                "side B",
                "size",
                "slots per ring",
                "largest message",
                "purpose",
            ]
            .map(String::from)
            .to_vec(),
        ];
        let qube = |i: u8| {
            m.qubes
                .get(usize::from(i))
                .map_or("?".to_string(), |q| q.name.to_string())
        };
        for ch in &m.channels {
            let geometry = Geometry::new(u64::from(ch.size), ch.slot_size);
            rows.push(vec![
                ch.name.to_string(),
                qube(ch.a),
                qube(ch.b),
                hints::kib(u64::from(ch.size) / 1024),
                geometry.map_or("?".to_string(), |g| {
                    format!("{} x {} B", g.slot_count, g.slot_size)
                }),
                geometry.map_or("?".to_string(), |g| format!("{} B", g.max_payload())),
                ch.purpose.to_string(),
            ]);
        }
        out.push('\n');
        out.push_str(&table(&rows));
    }
    let bundle: Vec<String> = c
        .images
        .iter()
        .enumerate()
        .map(|(i, name)| format!("#{} {name}", i + 1))
        .collect();
    out.push_str(&format!(
        "\nbundle: #0 manifest ({} bytes, version {}), {}",
        m.to_vec().len(),
        m.version,
        bundle.join(", ")
    ));
    out
}
