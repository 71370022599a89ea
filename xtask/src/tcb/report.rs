//! The measurement results and how they are gathered file by file.

use super::count::{self, Lines};
use super::elfsize::ElfSizes;
use super::unsafety::{self, ParseError, UnsafeCounts};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The group name of generated own files.
pub const GENERATED: &str = "generated";

/// Everything `cargo xtask tcb` measured.
#[derive(Clone, Debug, Serialize)]
pub struct TcbReport {
    /// One entry per image, in the order they were given.
    pub images: Vec<ImageReport>,
    /// Caveats of this run (e.g. an image measured without its dependencies).
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
    /// Whether cargo told us the dependency crates (false: only `<bin>.d` was read).
    pub dependencies_measured: bool,
    /// Own code by group: `core`, `platform` or `runtime`, `qube`.
    pub groups: Vec<Group>,
    /// Own files our build scripts generated (in `OUT_DIR`): compiled in but not written by
    /// hand, so kept out of the groups and the `own_*` totals.
    pub generated: Group,
    /// Own Rust lines, all groups.
    pub own_rust: Lines,
    /// Own assembly lines, all groups.
    pub own_asm: Lines,
    /// Unsafe sites in own Rust code.
    pub own_unsafe: UnsafeCounts,
    /// Dependency Rust lines.
    pub dep_rust: Lines,
    /// Dependency assembly lines.
    pub dep_asm: Lines,
    /// Unsafe sites in dependency Rust code.
    pub dep_unsafe: UnsafeCounts,
    /// Per dependency crate, by name.
    pub dependencies: Vec<Dependency>,
    /// ELF section sizes.
    pub sizes: ElfSizes,
    /// Every file compiled in.
    pub files: Vec<FileEntry>,
    /// Files in cargo's `<bin>.d` that are not compiled in: build scripts, linker scripts.
    pub build_inputs: Vec<String>,
    /// Crates compiled only to build the image: build scripts, proc macros, their deps.
    pub build_time_crates: Vec<String>,
}

/// One group of own code.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Group {
    /// `core`, `platform`, `runtime` or `qube`.
    pub name: String,
    /// Files in the group.
    pub files: u64,
    /// Rust lines.
    pub rust: Lines,
    /// Assembly lines.
    pub asm: Lines,
    /// Unsafe sites.
    pub unsafe_counts: UnsafeCounts,
}

/// One dependency crate.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Dependency {
    /// `name-version`.
    pub name: String,
    /// Files compiled in.
    pub files: u64,
    /// Rust lines.
    pub rust: Lines,
    /// Assembly lines.
    pub asm: Lines,
    /// Unsafe sites.
    pub unsafe_counts: UnsafeCounts,
}

/// One file compiled into an image.
#[derive(Clone, Debug, Serialize)]
pub struct FileEntry {
    /// Relative to the workspace root for our files, absolute for dependencies.
    pub path: String,
    /// `own` or the dependency crate's name.
    pub owner: String,
    /// The own-code group, if ours.
    pub group: Option<String>,
    /// Rust, asm or data.
    pub language: Language,
    /// Line counts (zero for data).
    pub lines: Lines,
    /// Size in bytes.
    pub bytes: u64,
    /// Unsafe sites (Rust files).
    pub unsafe_counts: UnsafeCounts,
    /// Why syn could not parse it, if it could not.
    pub parse_error: Option<ParseError>,
    /// The file could not be read.
    pub missing: bool,
}

/// What was measured about one file (cached: images share files).
#[derive(Clone, Debug)]
pub struct Measured {
    language: Language,
    lines: Lines,
    bytes: u64,
    unsafe_counts: UnsafeCounts,
    parse_error: Option<ParseError>,
    missing: bool,
}

impl Measured {
    /// Reads and measures `path`.
    pub fn of(path: &Path) -> Measured {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let language = match ext {
            "rs" => Language::Rust,
            "s" | "S" => Language::Asm,
            _ => Language::Data,
        };
        let mut m = Measured {
            language,
            lines: Lines::default(),
            bytes: 0,
            unsafe_counts: UnsafeCounts::default(),
            parse_error: None,
            missing: false,
        };
        let Ok(bytes) = std::fs::read(path) else {
            m.missing = true;
            return m;
        };
        m.bytes = bytes.len() as u64;
        let text = String::from_utf8_lossy(&bytes);
        match language {
            Language::Rust => {
                m.lines = count::rust(&text);
                match unsafety::count(&text) {
                    Ok(c) => m.unsafe_counts = c,
                    Err(e) => m.parse_error = Some(e),
                }
            }
            Language::Asm => m.lines = count::asm(&text),
            Language::Data => {}
        }
        m
    }
}

/// Accumulates one image's report file by file.
pub struct Builder {
    report: ImageReport,
    deps: BTreeMap<String, Dependency>,
}

impl Builder {
    /// An empty report; the groups are fixed by the role.
    pub fn new(name: &str, elf: &Path, role: Role, dependencies_measured: bool) -> Builder {
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
            dependencies_measured,
            groups: names.iter().map(|n| group(n)).collect(),
            generated: group(GENERATED),
            own_rust: Lines::default(),
            own_asm: Lines::default(),
            own_unsafe: UnsafeCounts::default(),
            dep_rust: Lines::default(),
            dep_asm: Lines::default(),
            dep_unsafe: UnsafeCounts::default(),
            dependencies: Vec::new(),
            sizes: ElfSizes::default(),
            files: Vec::new(),
            build_inputs: Vec::new(),
            build_time_crates: Vec::new(),
        };
        Builder {
            report,
            deps: BTreeMap::new(),
        }
    }

    /// Adds one of our files; `group` is one of the role's groups or [`GENERATED`].
    pub fn own(&mut self, path: &str, group: &str, m: &Measured) {
        let r = &mut self.report;
        let g = match r.groups.iter_mut().find(|g| g.name == group) {
            Some(g) => {
                add(m, &mut r.own_rust, &mut r.own_asm, &mut r.own_unsafe);
                g
            }
            None => &mut r.generated,
        };
        g.files += 1;
        add(m, &mut g.rust, &mut g.asm, &mut g.unsafe_counts);
        self.file(path, "own", Some(group), m);
    }

    /// Adds a file of dependency crate `name`.
    pub fn dependency(&mut self, path: &str, name: &str, m: &Measured) {
        let r = &mut self.report;
        add(m, &mut r.dep_rust, &mut r.dep_asm, &mut r.dep_unsafe);
        let new = || Dependency {
            name: name.to_string(),
            ..Dependency::default()
        };
        let d = self.deps.entry(name.to_string()).or_insert_with(new);
        d.files += 1;
        add(m, &mut d.rust, &mut d.asm, &mut d.unsafe_counts);
        self.file(path, name, None, m);
    }

    fn file(&mut self, path: &str, owner: &str, group: Option<&str>, m: &Measured) {
        self.report.files.push(FileEntry {
            path: path.to_string(),
            owner: owner.to_string(),
            group: group.map(str::to_string),
            language: m.language,
            lines: m.lines,
            bytes: m.bytes,
            unsafe_counts: m.unsafe_counts,
            parse_error: m.parse_error.clone(),
            missing: m.missing,
        });
    }

    /// The finished report.
    pub fn finish(
        mut self,
        sizes: ElfSizes,
        inputs: Vec<String>,
        build_time: Vec<String>,
    ) -> ImageReport {
        self.report.dependencies = self.deps.into_values().collect();
        self.report.sizes = sizes;
        self.report.build_inputs = inputs;
        self.report.build_time_crates = build_time;
        self.report
    }
}

fn add(m: &Measured, rust: &mut Lines, asm: &mut Lines, unsafe_counts: &mut UnsafeCounts) {
    match m.language {
        Language::Rust => *rust += m.lines,
        Language::Asm => *asm += m.lines,
        Language::Data => {}
    }
    *unsafe_counts += m.unsafe_counts;
}
