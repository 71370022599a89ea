//! The configuration a crate was compiled with, and `#[cfg(..)]` predicates evaluated against it.
//!
//! A crate's options are the target's (`rustc --print cfg` for the profile: `target_arch`,
//! `panic`, no `debug_assertions` in release, ...), its enabled features (cargo reports them per
//! compiled unit) and what its build script asked for (`cargo:rustc-cfg=..`). Like rustc, an
//! option that is not set is false; `test` is never set in an image.

use std::collections::BTreeSet;
use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, ExprLit, Lit, Meta, Token};

/// A set of cfg options: `name` or `name="value"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cfg(BTreeSet<(String, Option<String>)>);

/// Why an item is not compiled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Off {
    /// Test code: `#[test]`, or a cfg that holds when `test` is set (`#[cfg(test)]`).
    Test,
    /// Any other cfg that does not hold in this build (a disabled feature, another target).
    Cfg,
}

impl Cfg {
    /// Parses `rustc --print cfg` output and `cargo:rustc-cfg` values: one option per line,
    /// `name` or `name="value"`.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Cfg {
        let mut cfg = Cfg::default();
        for line in lines {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            match line.split_once('=') {
                Some((name, value)) => cfg.set(name.trim(), Some(value.trim().trim_matches('"'))),
                None => cfg.set(line, None),
            }
        }
        cfg
    }

    /// Sets an option.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        self.0.insert((name.to_string(), value.map(str::to_string)));
    }

    /// Adds every option of `other`.
    pub fn extend(&mut self, other: &Cfg) {
        self.0.extend(other.0.iter().cloned());
    }

    /// Sets `feature="name"` for each feature.
    pub fn with_features<'a>(mut self, features: impl IntoIterator<Item = &'a str>) -> Cfg {
        for f in features {
            self.set("feature", Some(f));
        }
        self
    }

    fn has(&self, name: &str, value: Option<&str>) -> bool {
        self.0
            .contains(&(name.to_string(), value.map(str::to_string)))
    }

    /// Whether an item with these attributes is compiled in, and if not, why. Attributes
    /// that cannot be understood count as compiled in.
    pub fn item(&self, attrs: &[Attribute]) -> Option<Off> {
        let mut off = None;
        for attr in attrs {
            if attr.path().is_ident("test") {
                return Some(Off::Test);
            }
            if !attr.path().is_ident("cfg") {
                continue;
            }
            let Ok(pred) = attr.parse_args::<Meta>() else {
                continue;
            };
            if self.eval(&pred, false) == Some(false) {
                let test = self.eval(&pred, true) == Some(true);
                off = Some(if test { Off::Test } else { Off::Cfg }).max(off);
            }
        }
        // `Off::Cfg` sorts after `Off::Test`: an item off for a reason other than `test` too
        // would stay off in a test build, so it is not test code.
        off
    }

    /// Evaluates a cfg predicate; `test` says whether the `test` option is set. `None`: a
    /// form this evaluator does not know.
    pub fn eval(&self, pred: &Meta, test: bool) -> Option<bool> {
        match pred {
            Meta::Path(p) => {
                let name = p.get_ident()?.to_string();
                Some(match name.as_str() {
                    "test" => test,
                    "true" => true,
                    "false" => false,
                    _ => self.has(&name, None),
                })
            }
            Meta::NameValue(nv) => {
                let name = nv.path.get_ident()?.to_string();
                let Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) = &nv.value
                else {
                    return None;
                };
                Some(self.has(&name, Some(&s.value())))
            }
            Meta::List(list) => {
                let op = list.path.get_ident()?.to_string();
                let args = list
                    .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
                    .ok()?;
                let values: Option<Vec<bool>> = args.iter().map(|a| self.eval(a, test)).collect();
                let values = values?;
                match (op.as_str(), values.as_slice()) {
                    ("all", v) => Some(v.iter().all(|&b| b)),
                    ("any", v) => Some(v.iter().any(|&b| b)),
                    ("not", [v]) => Some(!v),
                    _ => None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(src: &str) -> Vec<Attribute> {
        let item: syn::ItemFn = syn::parse_str(&format!("{src} fn f() {{}}")).unwrap();
        item.attrs
    }

    fn linux_std() -> Cfg {
        Cfg::parse(["target_os=\"linux\"", "unix", "panic=\"abort\""]).with_features(["std"])
    }

    #[test]
    fn parses_rustc_print_cfg() {
        let c = Cfg::parse(["debug_assertions", "target_arch=\"x86_64\"", ""]);
        assert!(c.has("debug_assertions", None));
        assert!(c.has("target_arch", Some("x86_64")));
        assert!(!c.has("target_arch", None));
    }

    #[test]
    fn features_targets_and_combinators() {
        let c = linux_std();
        assert_eq!(c.item(&attrs("#[cfg(feature = \"std\")]")), None);
        assert_eq!(
            c.item(&attrs("#[cfg(feature = \"alloc\")]")),
            Some(Off::Cfg)
        );
        assert_eq!(c.item(&attrs("#[cfg(all(unix, not(windows)))]")), None);
        assert_eq!(
            c.item(&attrs("#[cfg(any(windows, target_os = \"macos\"))]")),
            Some(Off::Cfg)
        );
        assert_eq!(c.item(&attrs("#[cfg(all())]")), None);
        assert_eq!(c.item(&attrs("#[cfg(any())]")), Some(Off::Cfg));
        assert_eq!(c.item(&attrs("#[cfg(debug_assertions)]")), Some(Off::Cfg));
        assert_eq!(c.item(&attrs("#[inline] #[cfg(unix)]")), None);
    }

    #[test]
    fn test_code_is_told_apart() {
        let c = linux_std();
        assert_eq!(c.item(&attrs("#[cfg(test)]")), Some(Off::Test));
        assert_eq!(c.item(&attrs("#[test]")), Some(Off::Test));
        assert_eq!(
            c.item(&attrs("#[cfg(all(test, feature = \"std\"))]")),
            Some(Off::Test)
        );
        assert_eq!(
            c.item(&attrs("#[cfg(any(test, feature = \"x\"))]")),
            Some(Off::Test)
        );
        assert_eq!(c.item(&attrs("#[cfg(not(test))]")), None);
        // Off in a test build too: not test code.
        assert_eq!(c.item(&attrs("#[cfg(all(test, windows))]")), Some(Off::Cfg));
        assert_eq!(
            c.item(&attrs("#[cfg(test)] #[cfg(windows)]")),
            Some(Off::Cfg)
        );
    }

    #[test]
    fn unknown_forms_count_as_compiled_in() {
        let c = linux_std();
        assert_eq!(c.item(&attrs("#[cfg(foo::bar)]")), None);
        assert_eq!(c.item(&attrs("#[cfg(not(a, b))]")), None);
        assert_eq!(c.item(&attrs("#[cfg_attr(test, inline)]")), None);
    }
}
