//! The Debian mirror debootstrap downloads from: the first `deb` source of the host's apt
//! configuration that serves the suite, so a machine behind a local mirror or proxy keeps
//! using it. Deb822 files (`/etc/apt/sources.list.d/*.sources`) are read first, then the
//! one-line files (`/etc/apt/sources.list`, `/etc/apt/sources.list.d/*.list`).

use std::path::{Path, PathBuf};

/// Debian's own redirector, used when apt names no mirror for the suite.
pub const FALLBACK: &str = "http://deb.debian.org/debian";

/// A mirror and where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    /// The URI passed to debootstrap.
    pub uri: String,
    /// The file that named it; `None` for [`FALLBACK`].
    pub from: Option<PathBuf>,
}

/// The host's mirror for `suite`, or [`FALLBACK`].
pub fn find(suite: &str) -> Mirror {
    find_in(Path::new("/etc/apt"), suite).unwrap_or_else(|| Mirror {
        uri: FALLBACK.to_string(),
        from: None,
    })
}

/// The first mirror for `suite` in the apt configuration under `etc_apt`.
pub fn find_in(etc_apt: &Path, suite: &str) -> Option<Mirror> {
    let listed = |ext: &str| -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(etc_apt.join("sources.list.d"))
            .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == ext));
        files.sort();
        files
    };
    let deb822 = listed("sources").into_iter().map(|p| (p, true));
    let one_line = std::iter::once(etc_apt.join("sources.list"))
        .chain(listed("list"))
        .map(|p| (p, false));
    deb822.chain(one_line).find_map(|(path, is_deb822)| {
        let text = std::fs::read_to_string(&path).ok()?;
        let uri = if is_deb822 {
            deb822_uri(&text, suite)
        } else {
            one_line_uri(&text, suite)
        }?;
        Some(Mirror {
            uri,
            from: Some(path),
        })
    })
}

/// The first URI of the first enabled `Types: deb` stanza whose `Suites` include `suite`
/// (deb822: stanzas apart by blank lines, `#` comments, continuation lines indented).
pub fn deb822_uri(text: &str, suite: &str) -> Option<String> {
    let mut stanza: Vec<(String, String)> = Vec::new();
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if let Some(uri) = stanza_uri(&stanza, suite) {
                return Some(uri);
            }
            stanza.clear();
        } else if line.starts_with('#') {
            continue;
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = stanza.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            stanza.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    None
}

fn stanza_uri(fields: &[(String, String)], suite: &str) -> Option<String> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let has = |name: &str, word: &str| {
        field(name).is_some_and(|v| v.split_whitespace().any(|w| w == word))
    };
    let enabled = field("enabled").is_none_or(|v| !v.eq_ignore_ascii_case("no"));
    if !(enabled && has("types", "deb") && has("suites", suite)) {
        return None;
    }
    field("uris")?
        .split_whitespace()
        .find(|uri| usable(uri))
        .map(str::to_string)
}

/// The URI of the first `deb` line for `suite` (`deb [options] URI SUITE COMPONENTS...`).
pub fn one_line_uri(text: &str, suite: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            return None;
        }
        let mut uri = words.next()?;
        if uri.starts_with('[') {
            // Options, which may hold spaces: up to the word that closes the bracket.
            while !uri.ends_with(']') {
                uri = words.next()?;
            }
            uri = words.next()?;
        }
        (words.next() == Some(suite) && usable(uri)).then(|| uri.to_string())
    })
}

/// Whether debootstrap can download from `uri` (not `cdrom:`, `mirror+file:` and the like).
fn usable(uri: &str) -> bool {
    ["http://", "https://", "file:/"]
        .iter()
        .any(|scheme| uri.starts_with(scheme))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_SOURCES: &str = "\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
";

    #[test]
    fn deb822_stanza_with_the_suite() {
        let uri = deb822_uri(DEBIAN_SOURCES, "bookworm");
        assert_eq!(uri.as_deref(), Some("http://deb.debian.org/debian"));
        let security = deb822_uri(DEBIAN_SOURCES, "bookworm-security");
        assert_eq!(
            security.as_deref(),
            Some("http://deb.debian.org/debian-security")
        );
        assert_eq!(deb822_uri(DEBIAN_SOURCES, "trixie"), None);
    }

    #[test]
    fn deb822_skips_disabled_source_only_and_unusable_stanzas() {
        let text = "\
Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

Types: deb
Enabled: no
URIs: http://off.example/debian
Suites: bookworm

types: deb deb-src
uris: cdrom:[Debian]/
  http://mirror.example/debian
suites:
  bookworm-updates
  bookworm
";
        let uri = deb822_uri(text, "bookworm");
        assert_eq!(uri.as_deref(), Some("http://mirror.example/debian"));
    }

    #[test]
    fn one_line_entries() {
        let text = "\
# deb http://commented.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://local.example/debian bookworm main
deb http://deb.debian.org/debian bookworm main
";
        let uri = one_line_uri(text, "bookworm");
        assert_eq!(uri.as_deref(), Some("http://local.example/debian"));
        assert_eq!(one_line_uri("deb [trusted=yes]", "bookworm"), None);
        assert_eq!(
            one_line_uri("deb cdrom:[x]/ bookworm main", "bookworm"),
            None
        );
    }

    #[test]
    fn deb822_files_first_then_sources_list_else_the_fallback() {
        let etc = std::env::temp_dir().join(format!("bulkhead-mirror-{}", std::process::id()));
        let d = etc.join("sources.list.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            etc.join("sources.list"),
            "deb http://list.example/d bookworm main\n",
        )
        .unwrap();
        let found = find_in(&etc, "bookworm").unwrap();
        assert_eq!(found.uri, "http://list.example/d");
        std::fs::write(d.join("b.sources"), DEBIAN_SOURCES).unwrap();
        std::fs::write(
            d.join("a.list.disabled"),
            "deb http://off.example/d bookworm main\n",
        )
        .unwrap();
        let found = find_in(&etc, "bookworm").unwrap();
        assert_eq!(found.uri, "http://deb.debian.org/debian");
        assert_eq!(found.from, Some(d.join("b.sources")));
        assert_eq!(find_in(&etc, "trixie"), None);
        std::fs::remove_dir_all(&etc).unwrap();
    }
}
