//! Template roots on the disk image: each template a Linux qube boots its root from
//! (`CompiledSystem::roots`) is one read-only volume of kind `Template`, named after the
//! template, shared by every qube of it (the disk holds it once). It holds the template's
//! squashfs image followed by its dm-verity hash tree (`crate::template`), exactly as built;
//! the qubes check it against the root hash their command line carries.
//!
//! A template volume is sized with room to spare ([`volume_bytes`]) so a rebuilt template
//! usually fits where the old one was; one that no longer fits gets a new volume at the end
//! of the disk (the old place is left unused). Its contents are compared with the image on
//! every [`super::prepare`] and rewritten when they differ.

use anyhow::{Context, Result};
use bulkhead_abi::block::SECTOR_SIZE;
use bulkhead_abi::bounded::BoundedVec;
use bulkhead_abi::disk::{DiskLayout, VolumeKind};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::system::CompiledSystem;
use crate::template::Template;

/// Template volumes are a multiple of this many bytes (64 MiB).
pub const TEMPLATE_ROUNDING: u64 = 64 << 20;

/// The templates `system`'s qubes boot their roots from, each once, built if need be.
pub fn wanted(system: &CompiledSystem) -> Result<Vec<Template>> {
    let mut names: Vec<&str> = Vec::new();
    for r in &system.roots {
        if !names.contains(&r.template.as_str()) {
            names.push(&r.template);
        }
    }
    names
        .into_iter()
        .map(|n| {
            crate::template::obtain(n)
                .with_context(|| format!("the template {n} (its qubes boot their root from it)"))
        })
        .collect()
}

/// Appends `bulkhead.verity=<data blocks>:<hash start>:<root hash>:<salt>` to the command
/// line of each qube that boots its template's root: the manifest carries it, so a storage
/// qube that changes the template's bytes is caught by the qube's dm-verity.
pub fn add_verity(system: &mut CompiledSystem) -> Result<()> {
    let templates = wanted(system)?;
    let names: Vec<String> = system
        .manifest
        .qubes
        .iter()
        .map(|q| q.name.as_str().to_string())
        .collect();
    for r in &system.roots {
        let t = templates
            .iter()
            .find(|t| t.name == r.template)
            .context("every root's template was obtained")?;
        let index = names
            .iter()
            .position(|n| *n == r.qube)
            .with_context(|| format!("{} is not in the manifest", r.qube))?;
        let line = system
            .cmdlines
            .iter_mut()
            .find(|c| c.qube == index)
            .with_context(|| format!("{} has no command line", r.qube))?;
        line.text
            .push_str(&format!(" bulkhead.verity={}", t.verity));
        if line.text.len() > crate::system::CMDLINE_MAX_LEN {
            anyhow::bail!(
                "the command line of {} is {} bytes with the template's verity parameters, \
                 more than {}: shorten its kernel_args",
                r.qube,
                line.text.len(),
                crate::system::CMDLINE_MAX_LEN
            );
        }
    }
    Ok(())
}

/// The size of the volume that holds an image of `bytes` bytes.
pub fn volume_bytes(bytes: u64) -> u64 {
    bytes.max(1).div_ceil(TEMPLATE_ROUNDING) * TEMPLATE_ROUNDING
}

/// The size the plan asks for: the volume's present size when the image still fits it (a
/// volume is never resized in place), else [`volume_bytes`].
pub fn planned_bytes(t: &Template, existing: Option<&DiskLayout>) -> u64 {
    let old = existing
        .and_then(|e| e.find(&t.name, VolumeKind::TemplateRoot))
        .map(|v| v.sectors * u64::from(SECTOR_SIZE));
    match old {
        Some(old) if old >= t.bytes => old,
        _ => volume_bytes(t.bytes),
    }
}

/// `existing` without the template volumes too small for their rebuilt image (the plan then
/// places them anew at the end); the names of those dropped.
pub fn drop_outgrown(existing: &DiskLayout, templates: &[Template]) -> (DiskLayout, Vec<String>) {
    let too_small = |name: &str| {
        templates.iter().any(|t| {
            t.name == name
                && existing
                    .find(name, VolumeKind::TemplateRoot)
                    .is_some_and(|v| v.sectors * u64::from(SECTOR_SIZE) < t.bytes)
        })
    };
    let dropped: Vec<String> = existing
        .volumes
        .iter()
        .filter(|v| v.kind == VolumeKind::TemplateRoot && too_small(&v.name))
        .map(|v| v.name.to_string())
        .collect();
    let kept = existing
        .volumes
        .iter()
        .filter(|v| !(v.kind == VolumeKind::TemplateRoot && too_small(&v.name)))
        .cloned();
    let layout = DiskLayout {
        disk_sectors: existing.disk_sectors,
        volumes: BoundedVec::try_from_iter(kept).expect("no more volumes than before"),
    };
    (layout, dropped)
}

/// Writes each template's image into its volume of `layout` on the image at `path`, where
/// the volume does not hold it already; the names of those written.
pub fn write_contents(
    path: &Path,
    layout: &DiskLayout,
    templates: &[Template],
) -> Result<Vec<String>> {
    let mut written = Vec::new();
    let mut disk = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    for t in templates {
        let v = layout
            .find(&t.name, VolumeKind::TemplateRoot)
            .with_context(|| {
                format!("the disk's table has no volume for the template {}", t.name)
            })?;
        let at = v.first_sector * u64::from(SECTOR_SIZE);
        let image = std::fs::read(&t.image)
            .with_context(|| format!("reading the template image {}", t.image.display()))?;
        let mut on_disk = vec![0u8; image.len()];
        disk.seek(SeekFrom::Start(at))?;
        let got = super::read_up_to(&mut disk, &mut on_disk)?;
        if got == image.len() && on_disk == image {
            continue;
        }
        disk.seek(SeekFrom::Start(at))?;
        disk.write_all(&image)
            .with_context(|| format!("writing the template {} into {}", t.name, path.display()))?;
        written.push(t.name.clone());
    }
    if !written.is_empty() {
        disk.sync_all()?;
    }
    Ok(written)
}
