use super::*;

const SAMPLE: &str = r#"
//! Sample.
use core::ptr;

/// Reads.
///
/// # Safety
/// `p` must be valid.
pub unsafe fn documented(p: *const u8) -> u8 {
    // SAFETY: the caller guarantees `p` is valid.
    unsafe { *p }
}

/// No safety section.
pub unsafe fn undocumented_fn() {}

pub fn user(p: *const u8) -> u8 {
    let a = unsafe { documented(p) };
    // SAFETY: fine,
    // spanning two lines.
    let b =
        unsafe { documented(p) };
    // SAFETY: attribute in between.
    #[allow(unused)]
    let c = unsafe { documented(p) };
    let s = "unsafe { not code }"; // unsafe in a string and a comment
    println!("{}", unsafe { documented(p) });
    a + b + c
}

struct S;
// SAFETY: S has no state.
unsafe impl Send for S {}
unsafe impl Sync for S {}

pub unsafe trait Marker {
    /// # Safety
    /// Never.
    unsafe fn m(&self);
}

unsafe impl Marker for S {
    unsafe fn m(&self) {}
}

unsafe extern "C" {
    fn ext();
}

#[unsafe(no_mangle)]
pub extern "C" fn exported() {}

macro_rules! gen {
    () => {
        // SAFETY: generated.
        unsafe fn generated() {}
        unsafe extern "C" fn generated_c() {}
        #[unsafe(export_name = "x")]
        fn exported_from_macro() {}
    };
}
"#;

#[test]
fn counts_every_kind_of_site() {
    let c = count(SAMPLE).unwrap();
    // Blocks: documented(1), user a/b/c (3), println (1).
    assert_eq!(c.blocks, 5);
    // documented, undocumented_fn, Marker::m, impl m, generated, generated_c.
    assert_eq!(c.fns, 6);
    assert_eq!(c.impls, 3);
    assert_eq!(c.traits, 1);
    assert_eq!(c.extern_blocks, 1);
    assert_eq!(c.attributes, 2);
    assert_eq!(c.in_macros, 3);
    assert_eq!(c.sites(), 15);
    // `let a` (no comment), println (no comment), `unsafe impl Sync`, `unsafe impl Marker`.
    assert_eq!(c.undocumented, 4);
    // undocumented_fn only: trait impl fns and macro tokens are not checked.
    assert_eq!(c.fns_without_safety_doc, 1);
}

#[test]
fn parse_errors_are_reported_with_a_line() {
    let err = count("fn ok() {}\nfn broken( {\n").unwrap_err();
    assert!(err.line >= 2, "{err:?}");
    assert!(!err.message.is_empty());
}

#[test]
fn comment_heuristic_stops_at_previous_statement() {
    let lines = ["// SAFETY: for the first.", "let a = 1;", "unsafe { x() };"];
    assert!(!has_safety_comment(&lines, 3));
    assert!(has_safety_comment(&lines, 2));
    let lines = ["// SAFETY: x", "", "unsafe { x() };"];
    assert!(!has_safety_comment(&lines, 3));
}
