//! The names a call carries besides its service and argument (those are
//! `bulkhead_abi::qrexec::valid_service` / `valid_argument`): qube names, the source the
//! admin qube names, the target a caller asks for.

use bulkhead_abi::boot_info::NAME_MAX;
use bulkhead_abi::qrexec::TARGET_MAX;

/// Targets that name no qube: the policy decides (`@default`), the admin qube itself
/// (`@adminvm`), a new disposable (`@dispvm`, or `@dispvm:NAME` of a given one).
pub const KEYWORD_TARGETS: [&str; 3] = ["@default", "@adminvm", "@dispvm"];

/// A qube's name: 1 to [`NAME_MAX`] bytes of ASCII letters, digits, `.`, `_` and `-`,
/// starting with a letter or digit (so never `.` or `..`: it names a folder).
pub fn valid_qube(s: &str) -> bool {
    s.len() <= NAME_MAX
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A target as a caller writes it (at most [`TARGET_MAX`] bytes).
pub fn valid_target(s: &str) -> bool {
    s.len() <= TARGET_MAX
        && (valid_qube(s)
            || KEYWORD_TARGETS.contains(&s)
            || s.strip_prefix("@dispvm:").is_some_and(valid_qube))
}

/// The source of a call as the admin qube names it: a qube, or `@adminvm` (the admin qube).
/// It becomes a folder name (`~/QubesIncoming/<source>`).
pub fn valid_source(s: &str) -> bool {
    valid_qube(s) || s == "@adminvm"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["work", "disp-1", "a.b_c", "9"] {
            assert!(
                valid_qube(good) && valid_target(good) && valid_source(good),
                "{good}"
            );
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "-x",
            "a/b",
            "a b",
            "é",
            &"q".repeat(25),
        ] {
            assert!(!valid_qube(bad) && !valid_source(bad), "{bad:?}");
        }
        for good in ["@default", "@adminvm", "@dispvm", "@dispvm:disp"] {
            assert!(valid_target(good), "{good}");
        }
        for bad in [
            "@dispvm:",
            "@dispvm:..",
            "@anyvm",
            "@tag:x",
            "@default:x",
            "@",
        ] {
            assert!(!valid_target(bad), "{bad}");
        }
        assert!(valid_source("@adminvm") && !valid_source("@dispvm"));
    }
}
