//! Fuzz target: arbitrary bytes as a system description (seeded with `systems/` and the
//! dictionary `system_description.dict`).
//!
//! Checks: no panic; a description that compiles yields a summary and bundle entries that
//! the manifest's indices agree with; one that does not has at least one diagnostic, and
//! every diagnostic has `file:line:column`, a non-empty key path, message and hint, and
//! prints as two lines (problem, hint) with no control character in either (so nothing
//! from the file reaches a terminal raw).
#![no_main]

use bulkhead_sysdesc::compile_bytes;
use libfuzzer_sys::fuzz_target;

const FILE: &str = "fuzz.toml";

fuzz_target!(|data: &[u8]| {
    match compile_bytes(FILE, data) {
        Ok(c) => {
            let _ = c.summary();
            let entries = c.entries();
            for (q, e) in c.manifest.qubes.iter().zip(&c.qube_entries) {
                assert_eq!(usize::from(q.image), e.image);
                assert!(e.image >= 1 && e.image <= entries.len());
            }
            assert_eq!(c.channel_ends.len(), c.manifest.channels.len());
        }
        Err(diags) => {
            assert!(!diags.is_empty(), "refused without a problem");
            for d in diags.iter() {
                let (line, column) = d.position.unwrap_or_else(|| panic!("no place: {d}"));
                assert!(line >= 1 && column >= 1, "{d}");
                assert!(!d.key.is_empty() && !d.message.is_empty() && !d.hint.is_empty());
                let shown = d.to_string();
                let lines: Vec<&str> = shown.split('\n').collect();
                assert_eq!(lines.len(), 2, "{shown:?}");
                assert!(
                    lines[0].starts_with(&format!("{FILE}:{line}:{column}: {}: ", d.key)),
                    "{shown:?}"
                );
                assert!(lines[1].starts_with("    hint: "), "{shown:?}");
                for l in lines {
                    assert!(!l.chars().any(char::is_control), "{shown:?}");
                }
            }
        }
    }
});
