//! The reference model: the policy read straight from its text, as a person reads
//! `docs/qrexec.md`. Qubes, tags and targets are strings; every rule is tried in order.

use std::collections::BTreeSet;

/// A qube as the description writes it.
#[derive(Clone, Debug)]
pub struct Qube {
    pub name: String,
    pub admin: bool,
    pub disposable: bool,
    pub default_dispvm: Option<String>,
    pub tags: Vec<String>,
}

/// A `[[policy]]` table as written.
#[derive(Clone, Debug)]
pub struct Rule {
    pub service: String,
    pub source: String,
    pub target: String,
    pub action: String,
    pub redirect: Option<String>,
    pub default_target: Option<String>,
}

/// A call: the target is a qube name, `@default`, `@dispvm`, `@dispvm:NAME` or `@adminvm`.
#[derive(Clone, Debug)]
pub struct Call {
    pub service: String,
    pub argument: String,
    pub source: String,
    pub target: String,
}

/// A decision in words: targets are qube names, `@dispvm:NAME` or `@adminvm`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Deny(&'static str, Option<usize>),
    Allow(String, usize),
    Ask(Option<String>, BTreeSet<String>, usize),
}

pub struct Model<'a> {
    pub qubes: &'a [Qube],
    pub rules: &'a [Rule],
}

impl Model<'_> {
    fn find(&self, name: &str) -> Option<&Qube> {
        self.qubes.iter().find(|q| q.name == name)
    }

    fn is_admin(&self, name: &str) -> bool {
        self.find(name).is_some_and(|q| q.admin)
    }

    /// `target` with the admin qube's name written `@adminvm`.
    fn plain(&self, target: &str) -> String {
        if self.is_admin(target) {
            "@adminvm".to_string()
        } else {
            target.to_string()
        }
    }

    fn service_matches(rule: &str, call: &Call) -> bool {
        if rule == "*" {
            return true;
        }
        match rule.split_once('+') {
            None => rule == call.service,
            Some((name, arg)) => name == call.service && arg == call.argument,
        }
    }

    fn source_matches(&self, rule: &str, source: &str) -> bool {
        let admin = self.is_admin(source);
        if rule == "@anyvm" {
            !admin
        } else if rule == "@adminvm" {
            admin
        } else if let Some(tag) = rule.strip_prefix("@tag:") {
            !admin && self.find(source).unwrap().tags.iter().any(|t| t == tag)
        } else {
            rule == source
        }
    }

    fn target_matches(&self, rule: &str, source: &str, asked: &str) -> bool {
        let is_qube = !asked.starts_with('@');
        if rule == "@anyvm" {
            is_qube || asked.starts_with("@dispvm")
        } else if let Some(base) = rule.strip_prefix("@dispvm:") {
            let default = self.find(source).unwrap().default_dispvm.as_deref();
            asked == rule || (asked == "@dispvm" && default == Some(base))
        } else if let Some(tag) = rule.strip_prefix("@tag:") {
            is_qube && self.find(asked).unwrap().tags.iter().any(|t| t == tag)
        } else if rule.starts_with('@') {
            rule == asked
        } else {
            self.plain(rule) == asked
        }
    }

    fn first(&self, call: &Call, asked: &str) -> Option<(usize, &Rule)> {
        self.rules.iter().enumerate().find(|(_, r)| {
            Self::service_matches(&r.service, call)
                && self.source_matches(&r.source, &call.source)
                && self.target_matches(&r.target, &call.source, asked)
        })
    }

    /// Where a call from `source` for `target` runs, or why it cannot.
    fn resolve(&self, source: &str, target: &str) -> Result<String, &'static str> {
        match target {
            "@default" => Err("no target"),
            "@dispvm" => match &self.find(source).unwrap().default_dispvm {
                Some(d) => Ok(format!("@dispvm:{d}")),
                None => Err("no default dispvm"),
            },
            other => Ok(self.plain(other)),
        }
    }

    fn valid(&self, call: &Call) -> bool {
        let known = |name: &str| self.find(name).is_some();
        let target_ok = match call.target.strip_prefix("@dispvm:") {
            Some(base) => self.find(base).is_some_and(|q| q.disposable),
            None => call.target.starts_with('@') || known(&call.target),
        };
        let word = |s: &str, extra: &str| {
            s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
        };
        known(&call.source)
            && target_ok
            && !call.service.is_empty()
            && word(&call.service, "._-")
            && word(&call.argument, "._-+")
    }

    pub fn decide(&self, call: &Call) -> Decision {
        if !self.valid(call) {
            return Decision::Deny("invalid call", None);
        }
        let asked = self.plain(&call.target);
        let Some((i, rule)) = self.first(call, &asked) else {
            return Decision::Deny("no match", None);
        };
        let target = rule.redirect.clone().unwrap_or_else(|| asked.clone());
        match rule.action.as_str() {
            "deny" => Decision::Deny("policy", Some(i)),
            "allow" => match self.resolve(&call.source, &target) {
                Ok(t) => Decision::Allow(t, i),
                Err(why) => Decision::Deny(why, Some(i)),
            },
            _ => {
                let choices: BTreeSet<String> = match &rule.redirect {
                    Some(r) => self.resolve(&call.source, r).into_iter().collect(),
                    None => self.choices(call),
                };
                if choices.is_empty() {
                    return Decision::Deny("no candidates", Some(i));
                }
                let offered = |t: &str| {
                    self.resolve(&call.source, t)
                        .ok()
                        .filter(|t| choices.contains(t))
                };
                let default = rule
                    .default_target
                    .as_deref()
                    .and_then(offered)
                    .or_else(|| offered(&asked));
                Decision::Ask(default, choices, i)
            }
        }
    }

    /// What an `ask` offers: every target the call could name and would be allowed or
    /// asked for.
    fn choices(&self, call: &Call) -> BTreeSet<String> {
        let mut named: Vec<String> = vec!["@dispvm".to_string(), "@adminvm".to_string()];
        for q in self.qubes {
            if !q.admin {
                named.push(q.name.clone());
            }
            if q.disposable {
                named.push(format!("@dispvm:{}", q.name));
            }
        }
        let mut out = BTreeSet::new();
        for t in named {
            let Some((_, rule)) = self.first(call, &t) else {
                continue;
            };
            if rule.action == "deny" {
                continue;
            }
            let target = rule.redirect.clone().unwrap_or(t);
            if let Ok(r) = self.resolve(&call.source, &target) {
                out.insert(r);
            }
        }
        out
    }
}
