use super::*;
use crate::tcb::count::rust_lines;
use crate::tcb::unsafety::count_file;

fn image() -> Cfg {
    Cfg::parse(["target_arch=\"x86_64\"", "panic=\"abort\""]).with_features(["net"])
}

/// Strips `src` for [`image`] and returns the line split and what was removed.
fn split(src: &str) -> (Split, Stripped, syn::File) {
    let mut file = syn::parse_file(src).unwrap();
    let stripped = strip(&mut file, &image());
    (Split::of(src, &rust_lines(src), &stripped), stripped, file)
}

fn code(s: &Split) -> (u64, u64, u64) {
    (s.kept.code, s.test.code, s.off.code)
}

#[test]
fn nested_cfg_test_module_is_test_code() {
    let src = "\
pub fn f() -> u32 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    // A comment inside.
    mod inner {
        #[test]
        fn g() {
            assert_eq!(super::super::f(), 1);
        }
    }
}
";
    let (s, st, file) = split(src);
    assert_eq!(code(&s), (3, 10, 0));
    assert_eq!(s.test.comment, 1);
    assert_eq!(s.test.blank, 1);
    assert_eq!(st.removed.len(), 1);
    assert_eq!(file.items.len(), 1);
}

#[test]
fn test_fns_in_a_compiled_module() {
    let src = "\
mod m {
    pub fn a() {}
    #[test]
    fn t() {}
}
";
    assert_eq!(code(&split(src).0), (3, 2, 0));
}

#[test]
fn feature_gated_fn_is_compiled_out_unless_enabled() {
    let src = "\
#[cfg(feature = \"virtio\")]
pub fn virtio() {
    unsafe { core::hint::unreachable_unchecked() }
}
#[cfg(feature = \"net\")]
pub fn net() {}
impl S {
    #[cfg(feature = \"std\")]
    fn std_only(&self) {}
    fn always(&self) {}
}
";
    let (s, _, file) = split(src);
    assert_eq!(code(&s), (5, 0, 6));
    // The unsafe block in the compiled-out function is not counted.
    assert_eq!(count_file(&file, src).blocks, 0);
}

#[test]
fn not_test_is_compiled_in() {
    let src = "\
#[cfg(not(test))]
fn real() {}
#[cfg(test)]
fn fake() {}
";
    assert_eq!(code(&split(src).0), (2, 2, 0));
}

#[test]
fn statements_fields_variants_and_arms() {
    let src = "\
struct S {
    a: u8,
    #[cfg(feature = \"std\")]
    b: u8,
}
enum E {
    A,
    #[cfg(test)]
    B,
}
fn f(e: E) {
    #[cfg(feature = \"std\")]
    let x = 1;
    #[cfg(feature = \"std\")]
    println!(\"x\");
    match e {
        E::A => {}
        #[cfg(test)]
        E::B => {}
    }
}
";
    let (s, st, _) = split(src);
    assert_eq!((s.test.code, s.off.code), (4, 6), "{:?}", st.removed);
}

#[test]
fn a_line_shared_with_kept_code_stays() {
    let src = "fn a() {} #[cfg(test)] fn b() {}\n#[cfg(test)] fn c() {} // trailing\n";
    assert_eq!(code(&split(src).0), (1, 1, 0));
}

#[test]
fn inner_cfg_removes_the_whole_file() {
    let src = "//! Doc.\n#![cfg(test)]\nfn a() {}\n";
    let (s, st, _) = split(src);
    assert_eq!(st.whole_file, Some(Off::Test));
    assert_eq!((s.kept.code, s.test.code, s.test.comment), (0, 2, 1));
}

#[test]
fn removed_out_of_line_modules_and_their_files() {
    let src = "\
#[cfg(test)]
#[path = \"x_tests.rs\"]
mod tests;
mod outer {
    #[cfg(feature = \"virtio\")]
    mod virtio;
}
#[cfg(test)]
mod helpers;
";
    let (_, st, _) = split(src);
    let got: Vec<(Vec<String>, &str, Option<&str>, Off)> = st
        .mods
        .iter()
        .map(|m| (m.inline.clone(), m.name.as_str(), m.path.as_deref(), m.why))
        .collect();
    assert_eq!(
        got,
        [
            (vec![], "tests", Some("x_tests.rs"), Off::Test),
            (vec![], "helpers", None, Off::Test),
            (vec!["outer".to_string()], "virtio", None, Off::Cfg),
        ]
    );

    let dir = std::env::temp_dir().join(format!("tcb-strip-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for f in [
        "src/x_tests.rs",
        "src/x/outer/virtio.rs",
        "src/helpers/mod.rs",
    ] {
        std::fs::create_dir_all(dir.join(f).parent().unwrap()).unwrap();
        std::fs::write(dir.join(f), "").unwrap();
    }
    let file = dir.join("src/x.rs");
    let found: Vec<Option<PathBuf>> = st.mods.iter().map(|m| mod_file(&file, false, m)).collect();
    assert_eq!(found[0], Some(dir.join("src/x_tests.rs")));
    assert_eq!(found[1], None, "not beside a non-mod-rs file");
    assert_eq!(found[2], Some(dir.join("src/x/outer/virtio.rs")));
    let lib = dir.join("src/lib.rs");
    assert!(owns_dir(&lib));
    assert_eq!(
        mod_file(&lib, true, &st.mods[1]),
        Some(dir.join("src/helpers/mod.rs"))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
