//! Reads Makefile-style dep-info files: the ones rustc writes next to every compiled crate
//! (`deps/<crate>-<hash>.d`, `--emit=dep-info`) and the one cargo writes next to every
//! uplifted artifact (`target/<profile>/<bin>.d`).
//!
//! What both tools actually write (checked with cargo/rustc 1.95): one rule per line,
//! `target...: prerequisite...`; rustc writes three rules (`.d`, `.rlib`, `.rmeta`) with the same
//! prerequisites, then one empty "phony" rule per input file, then `# env-dep:VAR=value`
//! comment lines. The only escape either tool writes is a backslash before a space; `#` and `$`
//! inside a path are written raw. Cargo writes absolute paths; rustc writes paths as cargo
//! passed them, i.e. relative to the workspace root for workspace members and absolute for
//! registry crates. This parser also accepts what other Makefile writers produce: backslash
//! line continuations, several targets per rule, `\#` and order-only `|` separators.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Reads `path` and returns its prerequisites (see [`parse`]); relative entries are resolved
/// against `base` (the directory cargo ran rustc in, i.e. the workspace root).
pub fn read(path: &Path, base: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading dep-info file {}", path.display()))?;
    Ok(parse(&text).into_iter().map(|p| base.join(p)).collect())
}

/// The prerequisites of every rule in a dep-info text, in order of first appearance and without
/// duplicates. Targets (the words before the rule's `:`) are not returned.
pub fn parse(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in logical_lines(text) {
        if line.trim_start().starts_with('#') {
            continue; // `# env-dep:`, `# checksum:`, `# size:` annotations
        }
        let Some(rest) = after_rule_colon(&line) else {
            continue;
        };
        for word in words(rest) {
            if word != "|" && !out.contains(&word) {
                out.push(word);
            }
        }
    }
    out
}

/// Joins backslash-newline continuations into single logical lines.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        match raw.strip_suffix('\\') {
            // An odd number of trailing backslashes: the last one escapes the newline.
            Some(body) if (raw.len() - raw.trim_end_matches('\\').len()) % 2 == 1 => {
                current.push_str(body);
                current.push(' ');
            }
            _ => {
                current.push_str(raw);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// The text after the colon that separates targets from prerequisites: the first unescaped `:`
/// followed by whitespace or the end of the line (so `C:\x` or `a:b.rs` do not split).
fn after_rule_colon(line: &str) -> Option<&str> {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b':' if bytes.get(i + 1).is_none_or(|b| b.is_ascii_whitespace()) => {
                return Some(&line[i + 1..]);
            }
            _ => i += 1,
        }
    }
    None
}

/// Splits on unescaped whitespace; `\ ` and `\#` become a literal space and `#`.
fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some(' ' | '#' | '\t')) => {
                word.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_output_with_spaces_and_raw_hash_and_dollar() {
        let text = "/t/release/app: /tmp/my\\ ws/app/src/main.rs /tmp/my\\ ws/sub\\ dir/src/da#ta\\ $f.s\n";
        assert_eq!(
            parse(text),
            [
                "/tmp/my ws/app/src/main.rs",
                "/tmp/my ws/sub dir/src/da#ta $f.s"
            ]
        );
    }

    #[test]
    fn rustc_output_multiple_rules_phony_rules_and_env_comments() {
        let text = "\
/t/deps/sub-1.d: sub\\ dir/src/lib.rs sub\\ dir/src/mem.s

/t/deps/libsub-1.rlib: sub\\ dir/src/lib.rs sub\\ dir/src/mem.s

/t/deps/libsub-1.rmeta: sub\\ dir/src/lib.rs sub\\ dir/src/mem.s

sub\\ dir/src/lib.rs:
sub\\ dir/src/mem.s:

# env-dep:OUT_DIR=/t/build/sub-2/out
# env-dep:CARGO_PKG_NAME=sub
";
        assert_eq!(parse(text), ["sub dir/src/lib.rs", "sub dir/src/mem.s"]);
    }

    #[test]
    fn continuations_multiple_targets_and_order_only() {
        let text =
            "a.o b.o: src/a.c \\\n  src/b\\ c.h \\\r\n  src/d.h | order/only.h\nx: y\\#z.rs\n";
        assert_eq!(
            parse(text),
            ["src/a.c", "src/b c.h", "src/d.h", "order/only.h", "y#z.rs"]
        );
    }

    #[test]
    fn colons_inside_paths_do_not_split() {
        let text = "out/a:b: src/x:y.rs C:\\src\\z.rs\n";
        assert_eq!(parse(text), ["src/x:y.rs", "C:\\src\\z.rs"]);
    }

    #[test]
    fn even_trailing_backslashes_do_not_continue() {
        let text = "t: a\\\\\nu: b\n";
        assert_eq!(parse(text), ["a\\\\", "b"]);
    }

    #[test]
    fn read_resolves_relative_entries() {
        let dir = std::env::temp_dir().join(format!("tcb-depinfo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("x.d");
        std::fs::write(&file, "t: rel/a.rs /abs/b.rs\n").unwrap();
        let got = read(&file, Path::new("/ws")).unwrap();
        assert_eq!(
            got,
            [PathBuf::from("/ws/rel/a.rs"), PathBuf::from("/abs/b.rs")]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
