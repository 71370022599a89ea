use super::*;
use report::FileEntry;
use std::fs;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("tcb test {tag} {}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir.canonicalize().unwrap())
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.0.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn escaped(path: &Path) -> String {
    path.display().to_string().replace(' ', "\\ ")
}

/// Measures a fake image from a hand-written `<bin>.d` only (no cargo), with the test binary
/// standing in for the ELF.
fn fake_image(ws: &Scratch, deps: &Scratch, own: &[(&str, &str)]) -> ImageReport {
    let mut listed: Vec<String> = own
        .iter()
        .map(|(rel, text)| escaped(&ws.write(rel, text)))
        .collect();
    deps.write("foo-1.0.0/Cargo.toml", "[package]\n");
    listed.push(escaped(&deps.write(
        "foo-1.0.0/src/lib.rs",
        "// dep\npub fn f() {}\nunsafe fn g() {}\n",
    )));
    let dep_info = ws.write(
        "target/release/img.d",
        &format!("/x/img: {}\n", listed.join(" ")),
    );
    let image = TcbImage {
        name: "img".into(),
        elf: std::env::current_exe().unwrap(),
        dep_info,
    };
    measure_image(&ws.0, &image, None, &mut HashMap::new()).unwrap()
}

#[test]
fn hypervisor_groups_asm_and_dependencies_from_cargo_dep_info() {
    let (ws, deps) = (Scratch::new("ws hv"), Scratch::new("deps hv"));
    ws.write(
        "target/CACHEDIR.TAG",
        "Signature: 8a477f597d28d172789f06886806bc55\n",
    );
    let r = fake_image(
        &ws,
        &deps,
        &[
            (
                "hypervisor/src/main.rs",
                "fn main() {\n    // SAFETY: test.\n    unsafe { x() }\n}\n",
            ),
            ("hypervisor/platform/src/pic.rs", "pub fn pic() {}\n"),
            ("hypervisor/abi/src/lib.rs", "pub struct A;\n"),
            ("hypervisor/src/entry.s", "# entry\n    hlt\n"),
            ("target/release/build/hv-1/out/stubs.s", "nop\nnop\n"),
        ],
    );
    assert_eq!((r.generated.files, r.generated.asm.code), (1, 2));
    assert_eq!(r.role, Role::Hypervisor);
    assert!(!r.dependencies_measured);
    let groups: Vec<(&str, u64, u64)> = r
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.rust.code, g.asm.code))
        .collect();
    assert_eq!(groups, [("core", 4, 1), ("platform", 1, 0)]);
    assert_eq!((r.own_rust.code, r.own_asm.code), (5, 1));
    assert_eq!((r.own_unsafe.blocks, r.own_unsafe.undocumented), (1, 0));
    assert_eq!(r.dependencies.len(), 1);
    assert_eq!(r.dependencies[0].name, "foo-1.0.0");
    assert_eq!(
        (
            r.dependencies[0].rust.code,
            r.dependencies[0].unsafe_counts.fns
        ),
        (2, 1)
    );
    assert_eq!(r.dep_rust.code, 2);
    assert!(r.sizes.text > 0);
    assert!(
        r.files
            .iter()
            .any(|f| f.path == "hypervisor/platform/src/pic.rs"
                && f.group.as_deref() == Some("platform"))
    );
}

#[test]
fn unikernel_groups_runtime_and_qube() {
    let (ws, deps) = (Scratch::new("ws uk"), Scratch::new("deps uk"));
    let r = fake_image(
        &ws,
        &deps,
        &[
            ("unikernels/net/src/main.rs", "fn main() {}\n"),
            (
                "unikernels/runtime/src/lib.rs",
                "pub fn a() {}\npub fn b() {}\n",
            ),
            ("hypervisor/abi/src/lib.rs", "pub struct A;\n"),
        ],
    );
    assert_eq!(r.role, Role::Unikernel);
    let groups: Vec<(&str, u64)> = r
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.rust.code))
        .collect();
    assert_eq!(groups, [("runtime", 3), ("qube", 1)]);
}

#[test]
fn renders_table_json_and_markdown() {
    let (ws, deps) = (Scratch::new("ws render"), Scratch::new("deps render"));
    let r = fake_image(&ws, &deps, &[("hypervisor/src/main.rs", "fn main() {}\n")]);
    let report = TcbReport {
        images: vec![r],
        notes: vec!["a note".into()],
    };
    let table = report.table();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("image") && lines[0].contains("rodata"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("img ") && lines[1].contains("core 1 / platform 0"),
        "{table}"
    );
    assert_eq!(lines[0].find("runs as"), lines[1].find("host"), "{table}");
    assert!(table.contains("note: a note"));
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["images"][0]["own_rust"]["code"], 1);
    assert_eq!(json["images"][0]["dependencies"][0]["name"], "foo-1.0.0");
    let md = report.markdown();
    assert!(
        md.contains("cargo xtask tcb") && md.contains("| img | host | 1 |"),
        "{md}"
    );
    assert!(md.contains("| foo-1.0.0 | 2 | 1 | img |"), "{md}");
}

/// End to end through cargo: builds xtask itself into a scratch target directory and measures
/// it. Slow (a release build), so run it on demand: `cargo test -p xtask -- --ignored tcb`.
#[test]
#[ignore]
fn tcb_measures_xtask_itself_through_cargo() {
    let root = crate::workspace_root();
    let target = std::env::temp_dir().join("tcb-e2e-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "-p", "xtask", "--target-dir"])
        .arg(&target)
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(status.success());
    let elf = target.join("release/xtask");
    let image = TcbImage {
        name: "xtask".into(),
        dep_info: elf.with_extension("d"),
        elf,
    };
    let report = measure(&root, &[image]).unwrap();
    let r = &report.images[0];
    assert!(r.dependencies_measured, "{:?}", report.notes);
    assert!(r.own_rust.code > 100);
    let own = |f: &&FileEntry| f.owner == "own" && f.path.ends_with("xtask/src/tcb/mod.rs");
    assert!(r.files.iter().any(|f| own(&f)));
    assert!(
        r.dependencies
            .iter()
            .any(|d| d.name.starts_with("serde_json-"))
    );
    // serde_derive is a proc macro: build time only, and so is syn as its dependency.
    assert!(
        !r.dependencies
            .iter()
            .any(|d| d.name.starts_with("serde_derive-"))
    );
    assert!(
        r.build_time_crates
            .iter()
            .any(|d| d.starts_with("serde_derive-"))
    );
}
