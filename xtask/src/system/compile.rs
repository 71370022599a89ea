//! Turning a checked description into the binary manifest and the bundle's image list, and
//! describing the result for people.

use super::check::Checked;
use super::{CompiledSystem, HYPERVISOR_RESERVE_MIB};
use bulkhead_abi::manifest::{MANIFEST_VERSION, Manifest, QubeKind, QubeSpec};
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
        };
        qubes.push(spec).map_err(|_| "too many qubes".to_string())?;
    }
    let system = heapless::String::try_from(checked.name.as_str())
        .map_err(|_| format!("system name {:?} does not fit", checked.name))?;
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        system,
        qubes,
        channels: heapless::Vec::new(), // [[channel]] entries: being added
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

/// A table of the qubes, with the memory budget and the bundle order.
pub(super) fn summary(c: &CompiledSystem) -> String {
    let m = &c.manifest;
    let used: u64 = m.qubes.iter().map(|q| u64::from(q.memory_mib)).sum();
    let free = u64::from(c.ram_mib).saturating_sub(used + u64::from(HYPERVISOR_RESERVE_MIB));
    let mut out = format!(
        "system \"{}\" ({}): {} qube{}, {used} MiB of {} MiB RAM \
         (+{HYPERVISOR_RESERVE_MIB} MiB hypervisor reserve, {free} MiB free)\n\n",
        m.system,
        c.path.display(),
        m.qubes.len(),
        if m.qubes.len() == 1 { "" } else { "s" },
        c.ram_mib,
    );
    let mut rows = vec![
        [
            "name", "kind", "image", "memory", "label", "restart", "args",
        ]
        .map(String::from),
    ];
    for q in &m.qubes {
        let image = c
            .images
            .get(usize::from(q.image).wrapping_sub(1))
            .map_or("?", |s| s);
        rows.push([
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
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
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
