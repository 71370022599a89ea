//! `cargo xtask template NAME`: a template's root file system (for `debian`: Debian bookworm,
//! debootstrapped) as a squashfs image with its dm-verity hash tree appended, in
//! `target/bulkhead/templates/NAME/`: `root.img`, and `verity.toml` with the tree's
//! parameters (what an AppVM's kernel command line carries as `bulkhead.verity=`).
//! [`obtain`] builds it once and then reuses it.

mod build;
mod mirror;
mod remove;
pub mod verity;

use crate::progress::{Steps, human_bytes};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A built template root image.
#[derive(Clone, Debug)]
pub struct Template {
    /// The template's name (`debian`).
    pub name: String,
    /// The image: squashfs, zero-padded to 4096-byte blocks, then the hash tree.
    pub image: PathBuf,
    /// The image's size in bytes, hash tree included.
    pub bytes: u64,
    /// The hash tree's parameters.
    pub verity: verity::Verity,
}

/// How to build one template.
#[derive(Debug)]
pub struct Recipe {
    /// Its name.
    pub name: &'static str,
    /// The Debian suite debootstrap installs.
    pub suite: &'static str,
    /// Packages installed besides debootstrap's `minbase` variant.
    pub include: &'static [&'static str],
    /// `/etc/hostname`.
    pub hostname: &'static str,
}

/// The templates xtask can build.
pub const RECIPES: &[Recipe] = &[Recipe {
    name: "debian",
    suite: "bookworm",
    include: &["iproute2", "procps", "nano", "less", "e2fsprogs"],
    hostname: "debian-template",
}];

/// The image's file name in the template's directory.
const IMAGE: &str = "root.img";
/// The parameters' file name beside it.
const RECORD: &str = "verity.toml";

/// What `verity.toml` holds: the image's size (a mismatch means the image is not the one
/// recorded) and the hash tree's parameters.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    /// The image's size, hash tree included.
    image_bytes: u64,
    data_blocks: u64,
    hash_start_block: u64,
    /// The root hash, hexadecimal.
    root: String,
    /// The salt, hexadecimal (random for each build).
    salt: String,
    /// The Debian suite and the mirror it came from.
    suite: String,
    mirror: String,
    /// Packages installed in the root file system.
    packages: u64,
}

fn recipe(name: &str) -> Result<&'static Recipe> {
    RECIPES.iter().find(|r| r.name == name).with_context(|| {
        let known: Vec<&str> = RECIPES.iter().map(|r| r.name).collect();
        format!(
            "no template named {name:?}; known templates: {}",
            known.join(", ")
        )
    })
}

/// The directory of template `name`: `target/bulkhead/templates/<name>`.
pub fn dir(name: &str) -> PathBuf {
    crate::bundle::out_dir().join("templates").join(name)
}

/// Builds the template if it is not built yet (or returns the cached one).
pub fn obtain(name: &str) -> Result<Template> {
    let recipe = recipe(name)?;
    let dir = dir(name);
    if dir.join(RECORD).exists() {
        match load(&dir) {
            Ok(template) => {
                println!(
                    "      template {name}: using {} (built before; `cargo xtask template {name} \
                     --rebuild` builds it again)",
                    template.image.display()
                );
                return Ok(template);
            }
            Err(e) => println!("      template {name}: {e:#}; building it again"),
        }
    }
    // The record goes first and comes back last: an image without one is never reused.
    let _ = std::fs::remove_file(dir.join(RECORD));
    let mut steps = Steps::new(build::STEPS);
    let built = build::build(recipe, &dir, &dir.join(IMAGE), &mut steps)?;
    let bytes = std::fs::metadata(&built.image)?.len();
    let v = &built.verity;
    let record = Record {
        image_bytes: bytes,
        data_blocks: v.data_blocks,
        hash_start_block: v.hash_start_block,
        root: verity::hex(&v.root),
        salt: verity::hex(&v.salt),
        suite: recipe.suite.to_string(),
        mirror: built.mirror,
        packages: built.packages,
    };
    let path = dir.join(RECORD);
    std::fs::write(&path, toml::to_string(&record)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Template {
        name: name.to_string(),
        image: built.image,
        bytes,
        verity: built.verity,
    })
}

/// The template built in `dir`, from its `verity.toml`; an error when there is none or the
/// image's size is not the recorded one.
pub fn load(dir: &Path) -> Result<Template> {
    let path = dir.join(RECORD);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let record: Record = toml::from_str(&text).with_context(|| path.display().to_string())?;
    let image = dir.join(IMAGE);
    let bytes = std::fs::metadata(&image)
        .with_context(|| format!("reading {}", image.display()))?
        .len();
    if bytes != record.image_bytes {
        bail!(
            "{} has {bytes} bytes, {} recorded {}",
            image.display(),
            path.display(),
            record.image_bytes
        );
    }
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    Ok(Template {
        name: name.into_owned(),
        image,
        bytes,
        verity: verity::Verity {
            data_blocks: record.data_blocks,
            hash_start_block: record.hash_start_block,
            root: verity::parse_hex32(&record.root).context("root")?,
            salt: verity::parse_hex32(&record.salt).context("salt")?,
        },
    })
}

/// The verb: build (or, with `rebuild`, build again from scratch) and say what there is.
pub fn verb(name: &str, rebuild: bool) -> Result<()> {
    recipe(name)?;
    let started = std::time::Instant::now();
    if rebuild {
        let dir = dir(name);
        remove::remove_tree(&dir)?;
        println!("      removed {} (--rebuild)", dir.display());
    }
    let t = obtain(name)?;
    let v = &t.verity;
    println!(
        "template {}: {} ({})",
        t.name,
        t.image.display(),
        human_bytes(t.bytes)
    );
    println!(
        "      {} data blocks, hash tree from block {}, root hash {}",
        v.data_blocks,
        v.hash_start_block,
        verity::hex(&v.root)
    );
    println!("      bulkhead.verity={v}");
    println!(
        "      dm table: 0 {} verity {}",
        v.data_blocks * (verity::BLOCK as u64 / 512),
        v.table_args("<dev>")
    );
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_templates() {
        assert_eq!(recipe("debian").unwrap().suite, "bookworm");
        let e = format!("{:#}", recipe("fedora").unwrap_err());
        assert_eq!(e, "no template named \"fedora\"; known templates: debian");
    }

    #[test]
    fn load_reuses_a_recorded_image_of_the_recorded_size_only() {
        let dir = std::env::temp_dir().join(format!("bulkhead-template-{}", std::process::id()));
        let dir = dir.join("debian");
        std::fs::create_dir_all(&dir).unwrap();
        let record = Record {
            image_bytes: 8192,
            data_blocks: 1,
            hash_start_block: 1,
            root: "11".repeat(32),
            salt: "22".repeat(32),
            suite: "bookworm".into(),
            mirror: "http://deb.debian.org/debian".into(),
            packages: 1,
        };
        let text = toml::to_string(&record).unwrap();
        assert_eq!(toml::from_str::<Record>(&text).unwrap(), record);
        std::fs::write(dir.join(RECORD), &text).unwrap();
        assert!(load(&dir).is_err(), "no image");
        std::fs::write(dir.join(IMAGE), [0u8; 8192]).unwrap();
        let t = load(&dir).unwrap();
        assert_eq!((t.name.as_str(), t.bytes), ("debian", 8192));
        assert_eq!((t.verity.root, t.verity.salt), ([0x11; 32], [0x22; 32]));
        std::fs::write(dir.join(IMAGE), [0u8; 4096]).unwrap();
        let e = format!("{:#}", load(&dir).unwrap_err());
        assert!(e.contains("has 4096 bytes"), "{e}");
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }
}
