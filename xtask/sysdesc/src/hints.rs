//! Helpers that turn a mistake into a fix: "did you mean", lists of allowed values, a valid
//! name close to an invalid one.

/// Edit distance (insertions, deletions, substitutions) between two short strings.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The allowed word closest to `word`, if it is close enough to be a likely typo.
pub(super) fn closest<'a>(word: &str, allowed: &[&'a str]) -> Option<&'a str> {
    if word.len() > 64 {
        return None;
    }
    let folded = word.to_ascii_lowercase().replace('_', "-");
    allowed
        .iter()
        .map(|a| (distance(&folded, &a.replace('_', "-")), *a))
        .filter(|(d, a)| *d <= (a.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

/// "a, b, c" for the allowed values.
pub(super) fn list(allowed: &[&str]) -> String {
    allowed.join(", ")
}

/// A hint naming the allowed values of `what`, leading with the likely intended one.
pub(super) fn one_of(what: &str, word: &str, allowed: &[&str]) -> String {
    match closest(word, allowed) {
        Some(c) => format!("did you mean \"{c}\"? {what} are {}", list(allowed)),
        None => format!("{what} are {}", list(allowed)),
    }
}

/// A valid qube name made from `name`: lower case, other characters turned into `-`,
/// starting with a letter, at most `max` bytes.
pub(super) fn valid_name_like(name: &str, max: usize) -> String {
    let mut out: String = name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    out = out.trim_start_matches('-').to_string();
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out = format!("qube-{out}");
    }
    out.truncate(max);
    let out = out.trim_end_matches('-');
    if out.is_empty() || out == "qube" {
        "qube".to_string()
    } else {
        out.to_string()
    }
}

/// An amount of memory given in KiB, as people read it: "3 MiB", "64 KiB", "3 MiB 64 KiB".
pub(super) fn kib(amount: u64) -> String {
    match (amount / 1024, amount % 1024) {
        (mib, 0) => format!("{mib} MiB"),
        (0, kib) => format!("{kib} KiB"),
        (mib, kib) => format!("{mib} MiB {kib} KiB"),
    }
}

/// A quoted, escaped form of user text that is safe to print on one line, shortened.
pub(super) fn quoted(text: &str) -> String {
    const SHOWN: usize = 40;
    if text.chars().count() > SHOWN {
        let head: String = text.chars().take(SHOWN).collect();
        format!("{head:?}...")
    } else {
        format!("{text:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(closest("grey", &["red", "gray"]), Some("gray"));
        assert_eq!(
            closest("on_failure", &["never", "on-failure", "always"]),
            Some("on-failure")
        );
        assert_eq!(closest("memory", &["memory_mib", "name"]), None);
        assert_eq!(
            closest("memry_mib", &["memory_mib", "name"]),
            Some("memory_mib")
        );
        assert_eq!(closest("pink", &["red", "gray"]), None);
    }

    #[test]
    fn makes_valid_names() {
        assert_eq!(valid_name_like("Net_VM", 24), "net-vm");
        assert_eq!(valid_name_like("9lives", 24), "qube-9lives");
        assert_eq!(valid_name_like("-net", 24), "net");
        assert_eq!(valid_name_like("123", 24), "qube-123");
        assert_eq!(valid_name_like("", 24), "qube");
        assert_eq!(valid_name_like("ÄÖ", 24), "qube");
        assert_eq!(valid_name_like(&"a".repeat(30), 24).len(), 24);
    }

    #[test]
    fn amounts_of_memory() {
        assert_eq!(kib(0), "0 MiB");
        assert_eq!(kib(3 * 1024), "3 MiB");
        assert_eq!(kib(64), "64 KiB");
        assert_eq!(kib(3 * 1024 + 64), "3 MiB 64 KiB");
    }

    #[test]
    fn quotes_and_shortens() {
        assert_eq!(quoted("a\nb"), "\"a\\nb\"");
        assert_eq!(
            quoted(&"x".repeat(50)),
            format!("\"{}\"...", "x".repeat(40))
        );
    }
}
