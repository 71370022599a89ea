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

/// Measures a fake image: one own crate with `own` files and a dependency `foo`, with the test
/// binary standing in for the ELF.
fn fake_image(ws: &Scratch, deps: &Scratch, own: &[(&str, &str)]) -> ImageReport {
    let listed: Vec<String> = own
        .iter()
        .map(|(rel, text)| escaped(&ws.write(rel, text)))
        .collect();
    deps.write("foo-1.0.0/Cargo.toml", "[package]\n");
    let dep = deps.write(
        "foo-1.0.0/src/lib.rs",
        "// dep\npub fn f() {}\nunsafe fn g() {}\n#[cfg(feature = \"std\")]\nfn h() {}\n",
    );
    let own_d = ws.write("out/img-1.d", &format!("/x/img-1: {}\n", listed.join(" ")));
    let dep_d = ws.write(
        "out/foo-1.d",
        &format!("/x/libfoo.rlib: {}\n", escaped(&dep)),
    );
    let build_rs = ws.write("hypervisor/build.rs", "fn main() {}\n");
    let bin_d = ws.write(
        "out/img.d",
        &format!(
            "/x/img: {} {} {}\n",
            listed.join(" "),
            escaped(&build_rs),
            escaped(&ws.0.join("hypervisor/../hypervisor/gone.rs"))
        ),
    );
    let unit = |package: &str, crate_name: &str, local: bool, dep_info: PathBuf| cargo::Unit {
        package: package.into(),
        crate_name: crate_name.into(),
        local,
        bin: local,
        dep_info,
        dir: None,
        cfg: cfg::Cfg::default(),
        rlib: None,
    };
    let built = cargo::ImageUnits {
        elf: std::env::current_exe().unwrap(),
        dep_info: bin_d,
        units: vec![
            unit("img-0.1.0", "img", true, own_d),
            unit("foo-1.0.0", "foo", false, dep_d),
        ],
        build_time: vec![],
    };
    measure_image(&ws.0, "img", &built, &HashSet::new(), &mut HashMap::new()).unwrap()
}

#[test]
fn hypervisor_groups_asm_and_dependencies_from_cargo_dep_info() {
    let (ws, deps) = (Scratch::new("ws hv"), Scratch::new("deps hv"));
    ws.write(
        "target/CACHEDIR.TAG",
        "Signature: 8a477f597d28d172789f06886806bc55\n",
    );
    // Not compiled (so not in the dep-info): named by a `#[cfg(test)] mod tests;`.
    ws.write("hypervisor/src/tests.rs", "#[test]\nfn a() {}\n");
    let r = fake_image(
        &ws,
        &deps,
        &[
            (
                "hypervisor/src/main.rs",
                "fn main() {\n    // SAFETY: test.\n    unsafe { x() }\n}\n#[cfg(test)]\nmod tests;\n#[cfg(test)]\nmod inline {\n    fn t() { unsafe {} }\n}\n",
            ),
            ("hypervisor/platform/src/pic.rs", "pub fn pic() {}\n"),
            ("hypervisor/abi/src/lib.rs", "pub struct A;\n"),
            ("hypervisor/src/entry.s", "# entry\n    hlt\n"),
            ("target/release/build/hv-1/out/stubs.s", "nop\nnop\n"),
        ],
    );
    assert_eq!((r.generated.files, r.generated.asm.code), (1, 2));
    assert_eq!(r.role, Role::Hypervisor);
    let groups: Vec<(&str, u64, u64)> = r
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.rust.code, g.asm.code))
        .collect();
    assert_eq!(groups, [("core", 4, 1), ("platform", 1, 0)]);
    assert_eq!((r.own_rust.code, r.own_asm.code), (5, 1));
    // The inline test module (4 lines), its file declaration (2) and that file (2).
    assert_eq!(r.own_test.code, 8);
    assert_eq!((r.own_unsafe.blocks, r.own_unsafe.undocumented), (1, 0));
    let deps: Vec<&report::Crate> = r.crates.iter().filter(|c| !c.own).collect();
    assert_eq!(deps.len(), 1);
    assert_eq!(deps[0].name, "foo-1.0.0");
    assert_eq!(
        (
            deps[0].rust.code,
            deps[0].off.code,
            deps[0].unsafe_counts.fns
        ),
        (2, 2, 1)
    );
    assert_eq!(r.dep_rust.code, 2);
    assert!(r.sizes.text > 0);
    let attributed: u64 = r.crates.iter().map(|c| c.text).sum::<u64>()
        + r.generated.text
        + r.toolchain_text
        + r.unattributed_text;
    assert_eq!(attributed, r.sizes.text);
    assert!(r.toolchain_text > 0);
    assert_eq!(r.build_inputs, ["hypervisor/build.rs"]);
    assert_eq!(r.missing_build_inputs, ["hypervisor/gone.rs"]);
    let tests_file = r
        .files
        .iter()
        .find(|f| f.path == "hypervisor/src/tests.rs")
        .unwrap();
    assert!(!tests_file.compiled && tests_file.test.code == 2);
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
    assert_eq!(json["images"][0]["crates"][0]["name"], "foo-1.0.0");
    let md = report.markdown();
    assert!(
        md.contains("cargo xtask tcb") && md.contains("| img | host | 1 |"),
        "{md}"
    );
    assert!(md.contains("| foo-1.0.0 | 1 | 2 / 0 |"), "{md}");
    assert!(md.contains("| img-0.1.0 (ours) | 0 | 1 / "), "{md}");
}

/// End to end through cargo: builds the usb placeholder on its own into the workspace's
/// `target/tcb/usb` and measures it. Slow (a release build), so run it on demand:
/// `cargo test -p xtask -- --ignored tcb`.
#[test]
#[ignore]
fn tcb_measures_an_image_through_cargo() {
    let root = crate::workspace_root();
    let image = TcbImage {
        name: "usb".into(),
        package: "bulkhead-usb".into(),
        bin: "usb".into(),
    };
    let report = measure(&root, &root.join("target"), &[image]).unwrap();
    let r = &report.images[0];
    assert_eq!(r.role, Role::Unikernel);
    assert!(r.own_rust.code > 100);
    let own =
        |f: &&FileEntry| f.owner.starts_with("bulkhead-rt-") && f.path.ends_with("src/lib.rs");
    assert!(r.files.iter().any(|f| own(&f)));
    // Built on its own: the runtime's network feature is off, so smoltcp is not compiled in.
    assert!(!r.crates.iter().any(|d| d.name.starts_with("smoltcp-")));
    let attributed: u64 = r.crates.iter().map(|c| c.text).sum::<u64>()
        + r.generated.text
        + r.toolchain_text
        + r.unattributed_text;
    assert_eq!(attributed, r.sizes.text);
    assert!(r.groups.iter().all(|g| g.text > 0), "{:?}", r.groups);
}

#[test]
fn platform_table_matches_the_tree() {
    let root = crate::workspace_root();
    for (dir, module) in PLATFORM {
        let path = root.join(dir);
        assert!(path.is_dir(), "{dir} is not a directory");
        let krate = path
            .ancestors()
            .find(|d| d.join("Cargo.toml").is_file())
            .unwrap();
        let manifest: toml::Table =
            toml::from_str(&fs::read_to_string(krate.join("Cargo.toml")).unwrap()).unwrap();
        let name = manifest["package"]["name"]
            .as_str()
            .unwrap()
            .replace('-', "_");
        let inner = path
            .strip_prefix(krate.join("src"))
            .unwrap_or(Path::new(""));
        let mut want = vec![name];
        want.extend(inner.iter().map(|c| c.to_string_lossy().into_owned()));
        assert_eq!(module, want.join("::"), "{dir}");
    }
    assert!(in_platform_module("bulkhead_platform::boot::zero_page"));
    assert!(in_platform_module("bulkhead_platform::pic::Pic"));
    assert!(!in_platform_module("bulkhead_platformish::x"));
    assert!(!in_platform_module("bulkhead_hvcore::unikernel::plan"));
    assert!(!in_platform_module("bulkhead_hvcore::paging::map"));
    let r = Path::new("/w");
    assert_eq!(
        group(
            Role::Hypervisor,
            r,
            Path::new("/w/hypervisor/src/guest/linux/mod.rs")
        ),
        "platform"
    );
    assert_eq!(
        group(Role::Hypervisor, r, Path::new("/w/hypervisor/src/qube.rs")),
        "core"
    );
    assert_eq!(
        group(
            Role::Hypervisor,
            r,
            Path::new("/w/hypervisor/src/guest/unikernel.rs")
        ),
        "core"
    );
    assert!(!in_platform_module(
        "bulkhead_hypervisor::guest::unikernel::x"
    ));
    assert_eq!(
        group(
            Role::Unikernel,
            r,
            Path::new("/w/unikernels/runtime/src/lib.rs")
        ),
        "runtime"
    );
    assert_eq!(
        group(
            Role::Unikernel,
            r,
            Path::new("/w/unikernels/net/src/main.rs")
        ),
        "qube"
    );
}
