//! Bad input is refused with a clear message and breaks nothing: every broken system
//! description in `systems/broken/` (xtask), and damaged boot bundles (the hypervisor).

use super::{Scenario, boots, expect};
use crate::qemu::{self, Control, HvEvent, Media};
use crate::system;
use anyhow::{Context, Result};

pub const BROKEN_DESCRIPTIONS: Scenario = Scenario {
    name: "broken-descriptions",
    about: "each file in systems/broken/ is refused with its file, key and a hint",
    run: broken_descriptions,
};

pub const BROKEN_BUNDLES: Scenario = Scenario {
    name: "broken-bundles",
    about: "the hypervisor refuses a damaged bundle or manifest with a message, no crash",
    run: broken_bundles,
};

fn broken_descriptions() -> Result<String> {
    let dir = crate::workspace_root().join("systems/broken");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    expect(files.len() >= 5, || {
        format!("only {} broken fixtures", files.len())
    })?;
    for f in &files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let msg = match system::compile_file(f) {
            Ok(_) => anyhow::bail!("{name} was accepted"),
            Err(e) => e.to_string(),
        };
        expect(msg.contains(&name), || {
            format!("{name}: message does not name the file: {msg}")
        })?;
        expect(msg.contains("hint:"), || {
            format!("{name}: message has no hint: {msg}")
        })?;
    }
    system::compile_file(&crate::workspace_root().join("systems/default.toml"))
        .context("the default system must still compile")?;
    Ok(format!("{} broken descriptions refused", files.len()))
}

/// Damages that must be refused, as (what, how to damage a good bundle, expected message).
/// A damage: its name, what it does to a bundle, and words the refusal must contain.
type Damage = (&'static str, fn(&mut Vec<u8>), &'static str);

const DAMAGES: &[Damage] = &[
    ("bad magic", |b| b[0] ^= 0xFF, "not a Bulkhead bundle"),
    (
        "entry out of range",
        |b| b[16 + 40 + 24..16 + 40 + 32].copy_from_slice(&u64::MAX.to_le_bytes()),
        "outside the bundle",
    ),
    (
        "manifest version",
        |b| manifest_bytes(b, 4, &127u16.to_le_bytes()),
        "manifest version 127",
    ),
    (
        "manifest magic",
        |b| manifest_bytes(b, 0, b"XXXX"),
        "not a manifest",
    ),
    (
        "manifest tag",
        // The first qube's kind byte (after the header and its name field).
        |b| {
            let at = bulkhead_abi::manifest::HEADER_LEN + 2 + bulkhead_abi::boot_info::NAME_MAX;
            manifest_bytes(b, at, &[9]);
        },
        "undefined tag",
    ),
    ("truncated", |b| b.truncate(20), "truncated"),
];

/// Overwrites the manifest's bytes at `at` (from its start) with `v`.
fn manifest_bytes(b: &mut [u8], at: usize, v: &[u8]) {
    let off = u64::from_le_bytes(b[16 + 24..16 + 32].try_into().unwrap_or([0; 8])) as usize;
    if let Some(x) = b.get_mut(off + at..off + at + v.len()) {
        x.copy_from_slice(v);
    }
}

fn broken_bundles() -> Result<String> {
    let a = boots::assemble("systems/tests/services.toml")?;
    let good = std::fs::read(&a.bundle_path)?;
    let dir = crate::bundle::out_dir();
    for (what, damage, expected) in DAMAGES {
        let mut bytes = good.clone();
        damage(&mut bytes);
        let path = dir.join(format!("damaged-{}.bundle", what.replace(' ', "-")));
        std::fs::write(&path, &bytes)?;
        let mut opts = boots::options(
            &a,
            "max",
            30,
            &format!("damaged-{}", what.replace(' ', "-")),
        );
        opts.media = Media::Direct {
            kernel: a.hypervisor.elf.clone(),
            bundle: path,
        };
        let out = qemu::boot(&opts, |e| {
            Control::stop_if(matches!(e.hv, Some(HvEvent::Halting)))
        })?;
        let msg = out.panic.clone().unwrap_or_default();
        expect(out.halted && msg.contains(expected), || {
            format!(
                "{what}: expected a refusal containing {expected:?}, got {:?}",
                out.lines.last()
            )
        })?;
        expect(out.ready.is_empty(), || {
            format!("{what}: a qube started anyway")
        })?;
    }
    Ok(format!("{} damaged bundles refused", DAMAGES.len()))
}
