//! The measurement results and how they are gathered file by file.

use super::cfg::{Cfg, Off};
use super::count::{self, Lines};
use super::elfsize::ElfSizes;
use super::strip::{self, Split};
use super::unsafety::{self, ParseError, UnsafeCounts};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The group name of generated own files.
pub const GENERATED: &str = "generated";

/// Everything `cargo xtask tcb` measured.
#[derive(Clone, Debug, Serialize)]
pub struct TcbReport {
    /// One entry per image, in the order they were given.
    pub images: Vec<ImageReport>,
    /// Caveats of this run.
    pub notes: Vec<String>,
}

/// The privilege level an image runs at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The hypervisor (host, most privileged); own code splits into core and platform.
    Hypervisor,
    /// A unikernel in a qube (guest); own code splits into runtime and qube.
    Unikernel,
}

/// The language of a source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// `.rs`
    Rust,
    /// `.s`, `.S`
    Asm,
    /// Anything else compiled in (`include_bytes!`, `include_str!` of non-code): bytes only.
    Data,
}

/// The measurement of one image.
#[derive(Clone, Debug, Serialize)]
pub struct ImageReport {
    /// Report name.
    pub name: String,
    /// The ELF measured.
    pub elf: String,
    /// Hypervisor or unikernel.
    pub role: Role,
    /// Own code by group: `core`, `platform` or `runtime`, `qube`.
    pub groups: Vec<Group>,
    /// Own files our build scripts generated (in `OUT_DIR`): compiled in but not written by
    /// hand, so kept out of the groups and the `own_*` totals.
    pub generated: Group,
    /// Own Rust lines compiled in, all groups.
    pub own_rust: Lines,
    /// Own assembly lines, all groups.
    pub own_asm: Lines,
    /// Own test code (`#[cfg(test)]`, `#[test]`) in the crates compiled in: not counted.
    pub own_test: Lines,
    /// Own code compiled out by other cfgs (disabled features): not counted.
    pub own_off: Lines,
    /// Unsafe sites in own Rust code compiled in.
    pub own_unsafe: UnsafeCounts,
    /// Dependency Rust lines compiled in.
    pub dep_rust: Lines,
    /// Dependency assembly lines.
    pub dep_asm: Lines,
    /// Dependency lines compiled out (test code and other cfgs): not counted.
    pub dep_off: Lines,
    /// Unsafe sites in dependency Rust code compiled in.
    pub dep_unsafe: UnsafeCounts,
    /// Every crate compiled in, ours and dependencies, by package.
    pub crates: Vec<Crate>,
    /// Linked text bytes of the toolchain's prebuilt crates (`core`, `alloc`,
    /// `compiler_builtins`) and rustc's shims.
    pub toolchain_text: u64,
    /// Linked text bytes no crate could be named for (alignment padding, unknown symbols).
    pub unattributed_text: u64,
    /// ELF section sizes.
    pub sizes: ElfSizes,
    /// Every file compiled in, and the module files compiled out.
    pub files: Vec<FileEntry>,
    /// Files in cargo's `<bin>.d` that are not compiled in: build scripts, linker scripts.
    pub build_inputs: Vec<String>,
    /// Files a build script names (`rerun-if-changed`) that do not exist: cargo then reruns
    /// that build script, and relinks the image, on every build.
    pub missing_build_inputs: Vec<String>,
    /// Crates compiled only to build the image: build scripts, proc macros, their deps.
    pub build_time_crates: Vec<String>,
}

/// One group of own code.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Group {
    /// `core`, `platform`, `runtime` or `qube`.
    pub name: String,
    /// Files compiled in.
    pub files: u64,
    /// Rust lines compiled in.
    pub rust: Lines,
    /// Assembly lines.
    pub asm: Lines,
    /// Test lines (not compiled in).
    pub test: Lines,
    /// Lines compiled out by other cfgs.
    pub off: Lines,
    /// Unsafe sites.
    pub unsafe_counts: UnsafeCounts,
    /// Linked text bytes.
    pub text: u64,
}

/// One crate compiled into an image.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Crate {
    /// `name-version`.
    pub name: String,
    /// One of ours (a workspace crate).
    pub own: bool,
    /// Files compiled in.
    pub files: u64,
    /// Rust lines compiled in.
    pub rust: Lines,
    /// Assembly lines.
    pub asm: Lines,
    /// Test lines.
    pub test: Lines,
    /// Lines compiled out by other cfgs.
    pub off: Lines,
    /// Unsafe sites.
    pub unsafe_counts: UnsafeCounts,
    /// Linked text bytes (0: compiled, but none of its code is linked).
    pub text: u64,
    /// Other crates of the same name in the image: symbols name only the crate, so code
    /// found in no rlib (generic code instantiated elsewhere) goes to the first of them.
    pub same_name: Vec<String>,
}

/// One source file.
#[derive(Clone, Debug, Serialize)]
pub struct FileEntry {
    /// Relative to the workspace root for our files, absolute for dependencies.
    pub path: String,
    /// The crate (package) it belongs to.
    pub owner: String,
    /// The own-code group, if ours.
    pub group: Option<String>,
    /// Rust, asm or data.
    pub language: Language,
    /// Whether the file is compiled in (false: a module file behind a cfg that does not hold).
    pub compiled: bool,
    /// Lines compiled in.
    pub lines: Lines,
    /// Test lines.
    pub test: Lines,
    /// Lines compiled out by other cfgs.
    pub off: Lines,
    /// Size in bytes.
    pub bytes: u64,
    /// Unsafe sites compiled in (Rust files).
    pub unsafe_counts: UnsafeCounts,
    /// Why syn could not parse it, if it could not (then nothing is stripped).
    pub parse_error: Option<ParseError>,
    /// The file could not be read.
    pub missing: bool,
}

/// What was measured about one file (cached: images share files).
#[derive(Clone, Debug)]
pub struct Measured {
    language: Language,
    compiled: bool,
    split: Split,
    bytes: u64,
    unsafe_counts: UnsafeCounts,
    parse_error: Option<ParseError>,
    missing: bool,
    /// Module files this one declares behind a cfg that does not hold.
    pub removed_mods: Vec<(PathBuf, Off)>,
}

impl Measured {
    /// Reads and measures `path` as compiled with `cfg`; `dir_owner`: a crate root or
    /// `mod.rs`, for finding its module files.
    pub fn of(path: &Path, cfg: &Cfg, dir_owner: bool) -> Measured {
        Measured::read(path, dir_owner, |text, kinds| {
            let mut file = unsafety::parse(text)?;
            let stripped = strip::strip(&mut file, cfg);
            Ok((
                Split::of(text, kinds, &stripped),
                unsafety::count_file(&file, text),
                stripped.mods,
            ))
        })
    }

    /// Measures a module file that is not compiled in (`why`), and its own module files.
    pub fn compiled_out(path: &Path, why: Off) -> Measured {
        let mut m = Measured::read(path, strip::owns_dir(path), |text, kinds| {
            let file = unsafety::parse(text)?;
            let mods = strip::out_of_line_mods(&file, why);
            Ok((Split::all(kinds, Some(why)), UnsafeCounts::default(), mods))
        });
        m.compiled = false;
        m
    }

    fn read(
        path: &Path,
        dir_owner: bool,
        rust: impl Fn(
            &str,
            &[count::Kind],
        ) -> Result<(Split, UnsafeCounts, Vec<strip::RemovedMod>), ParseError>,
    ) -> Measured {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let language = match ext {
            "rs" => Language::Rust,
            "s" | "S" => Language::Asm,
            _ => Language::Data,
        };
        let mut m = Measured {
            language,
            compiled: true,
            split: Split::default(),
            bytes: 0,
            unsafe_counts: UnsafeCounts::default(),
            parse_error: None,
            missing: false,
            removed_mods: Vec::new(),
        };
        let Ok(bytes) = std::fs::read(path) else {
            m.missing = true;
            return m;
        };
        m.bytes = bytes.len() as u64;
        let text = String::from_utf8_lossy(&bytes);
        match language {
            Language::Rust => {
                let kinds = count::rust_lines(&text);
                match rust(&text, &kinds) {
                    Ok((split, unsafe_counts, mods)) => {
                        m.split = split;
                        m.unsafe_counts = unsafe_counts;
                        m.removed_mods = mods
                            .iter()
                            .filter_map(|r| Some((strip::mod_file(path, dir_owner, r)?, r.why)))
                            .collect();
                    }
                    Err(e) => {
                        m.split = Split::all(&kinds, None);
                        m.parse_error = Some(e);
                    }
                }
            }
            Language::Asm => m.split.kept = count::asm(&text),
            Language::Data => {}
        }
        m
    }
}

/// Accumulates one image's report file by file.
pub struct Builder {
    report: ImageReport,
    crates: BTreeMap<String, Crate>,
}

impl Builder {
    /// An empty report; the groups are fixed by the role.
    pub fn new(name: &str, elf: &Path, role: Role) -> Builder {
        let names: [&str; 2] = match role {
            Role::Hypervisor => ["core", "platform"],
            Role::Unikernel => ["runtime", "qube"],
        };
        let group = |n: &str| Group {
            name: n.to_string(),
            ..Group::default()
        };
        let report = ImageReport {
            name: name.to_string(),
            elf: elf.display().to_string(),
            role,
            groups: names.iter().map(|n| group(n)).collect(),
            generated: group(GENERATED),
            own_rust: Lines::default(),
            own_asm: Lines::default(),
            own_test: Lines::default(),
            own_off: Lines::default(),
            own_unsafe: UnsafeCounts::default(),
            dep_rust: Lines::default(),
            dep_asm: Lines::default(),
            dep_off: Lines::default(),
            dep_unsafe: UnsafeCounts::default(),
            crates: Vec::new(),
            toolchain_text: 0,
            unattributed_text: 0,
            sizes: ElfSizes::default(),
            files: Vec::new(),
            build_inputs: Vec::new(),
            missing_build_inputs: Vec::new(),
            build_time_crates: Vec::new(),
        };
        Builder {
            report,
            crates: BTreeMap::new(),
        }
    }

    /// Lists a crate (so that one without files or text still shows).
    pub fn add_crate(&mut self, name: &str, own: bool) -> &mut Crate {
        self.crates
            .entry(name.to_string())
            .or_insert_with(|| Crate {
                name: name.to_string(),
                own,
                ..Crate::default()
            })
    }

    /// Adds one of our files of crate `krate`; `group` is one of the role's groups or
    /// [`GENERATED`].
    pub fn own(&mut self, path: &str, krate: &str, group: &str, m: &Measured) {
        let r = &mut self.report;
        let g = match r.groups.iter_mut().find(|g| g.name == group) {
            Some(g) => {
                add(m, &mut r.own_rust, &mut r.own_asm, &mut r.own_unsafe);
                r.own_test += m.split.test;
                r.own_off += m.split.off;
                g
            }
            None => &mut r.generated,
        };
        g.files += u64::from(m.compiled);
        add(m, &mut g.rust, &mut g.asm, &mut g.unsafe_counts);
        g.test += m.split.test;
        g.off += m.split.off;
        self.add_to_crate(krate, true, m);
        self.file(path, krate, Some(group), m);
    }

    /// Adds a file of dependency crate `krate`.
    pub fn dependency(&mut self, path: &str, krate: &str, m: &Measured) {
        let r = &mut self.report;
        add(m, &mut r.dep_rust, &mut r.dep_asm, &mut r.dep_unsafe);
        r.dep_off += m.split.test;
        r.dep_off += m.split.off;
        self.add_to_crate(krate, false, m);
        self.file(path, krate, None, m);
    }

    fn add_to_crate(&mut self, krate: &str, own: bool, m: &Measured) {
        let c = self.add_crate(krate, own);
        c.files += u64::from(m.compiled);
        add(m, &mut c.rust, &mut c.asm, &mut c.unsafe_counts);
        c.test += m.split.test;
        c.off += m.split.off;
    }

    fn file(&mut self, path: &str, owner: &str, group: Option<&str>, m: &Measured) {
        self.report.files.push(FileEntry {
            path: path.to_string(),
            owner: owner.to_string(),
            group: group.map(str::to_string),
            language: m.language,
            compiled: m.compiled,
            lines: m.split.kept,
            test: m.split.test,
            off: m.split.off,
            bytes: m.bytes,
            unsafe_counts: m.unsafe_counts,
            parse_error: m.parse_error.clone(),
            missing: m.missing,
        });
    }

    /// Adds linked text bytes to a crate and, for ours, to a group.
    pub fn text(&mut self, krate: &str, group: Option<&str>, bytes: u64) {
        self.add_crate(krate, group.is_some()).text += bytes;
        if let Some(g) = group {
            let r = &mut self.report;
            let g = r.groups.iter_mut().find(|x| x.name == g);
            g.unwrap_or(&mut r.generated).text += bytes;
        }
    }

    /// Adds text bytes of the toolchain's crates, or that no crate could be named for.
    pub fn other_text(&mut self, toolchain: bool, bytes: u64) {
        if toolchain {
            self.report.toolchain_text += bytes;
        } else {
            self.report.unattributed_text += bytes;
        }
    }

    /// Notes the crates that share a name (and so their text).
    pub fn same_name(&mut self, names: &[String]) {
        for n in names {
            let others: Vec<String> = names.iter().filter(|o| *o != n).cloned().collect();
            self.add_crate(n, false).same_name = others;
        }
    }

    /// The finished report.
    pub fn finish(
        mut self,
        sizes: ElfSizes,
        inputs: Vec<String>,
        build_time: Vec<String>,
    ) -> ImageReport {
        self.report.crates = self.crates.into_values().collect();
        self.report.sizes = sizes;
        self.report.build_inputs = inputs;
        self.report.build_time_crates = build_time;
        self.report
    }
}

fn add(m: &Measured, rust: &mut Lines, asm: &mut Lines, unsafe_counts: &mut UnsafeCounts) {
    match m.language {
        Language::Rust => *rust += m.split.kept,
        Language::Asm => *asm += m.split.kept,
        Language::Data => {}
    }
    *unsafe_counts += m.unsafe_counts;
}
