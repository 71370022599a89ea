//! Keeps docs/architecture.md's list of the hypervisor's unsafe modules true: every
//! `#[allow(unsafe_code)]` in the image's source and every entry of the list must match.

use std::collections::BTreeSet;
use std::path::Path;

/// The module (or item) each `#[allow(unsafe_code)]` under `src` applies to: `a::b` for a
/// `mod b;` declared in `a`, the function name for an item in main.rs.
fn allowed_in_source(src: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("reading the hypervisor source") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let parent: Vec<String> = rel
                .parent()
                .into_iter()
                .flat_map(|p| p.components())
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let stem = rel.file_stem().unwrap_or_default().to_string_lossy();
            let mut prefix = parent.clone();
            if stem != "mod" && stem != "main" {
                prefix.push(stem.to_string());
            }
            let text = std::fs::read_to_string(&path).expect("reading a source file");
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                if line.trim() != "#[allow(unsafe_code)]" {
                    continue;
                }
                let next = lines[i + 1..]
                    .iter()
                    .map(|l| l.trim())
                    .find(|l| !l.starts_with("#[") && !l.starts_with("//"))
                    .unwrap_or("");
                let words: Vec<&str> = next
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .filter(|w| !w.is_empty())
                    .collect();
                if let Some(pos) = words.iter().position(|w| *w == "mod") {
                    let mut path = prefix.clone();
                    path.push(words[pos + 1].to_string());
                    out.insert(path.join("::"));
                } else if let Some(pos) = words.iter().position(|w| *w == "fn") {
                    out.insert(words[pos + 1].to_string());
                } else {
                    // A statement: named by the function it is in.
                    let f = lines[..i]
                        .iter()
                        .rev()
                        .find_map(|l| l.split("fn ").nth(1))
                        .and_then(|rest| rest.split('(').next())
                        .unwrap_or("?");
                    out.insert(f.trim().to_string());
                }
            }
        }
    }
    out
}

/// The first backquoted name of each entry between the markers of docs/architecture.md.
fn listed_in_docs(doc: &str) -> BTreeSet<String> {
    let begin = doc
        .find("<!-- unsafe-modules:begin -->")
        .expect("begin marker");
    let end = doc.find("<!-- unsafe-modules:end -->").expect("end marker");
    doc[begin..end]
        .lines()
        .filter_map(|l| l.strip_prefix("- `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_documented_unsafe_modules_are_the_allowed_ones() {
    let root = crate::workspace_root();
    let source = allowed_in_source(&root.join("hypervisor/src"));
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).expect("docs");
    let listed = listed_in_docs(&doc);
    assert!(!source.is_empty());
    assert_eq!(
        source, listed,
        "#[allow(unsafe_code)] in hypervisor/src (left) and docs/architecture.md (right) differ"
    );
}

#[test]
fn the_image_crate_root_denies_unsafe_code() {
    let main = std::fs::read_to_string(crate::workspace_root().join("hypervisor/src/main.rs"))
        .expect("main.rs");
    assert!(main.contains("#![deny(unsafe_code)]"));
}
