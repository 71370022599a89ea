//! A qube's reference to a *service qube*, a qube named by the image it runs: `guivm` names
//! a qube with `image = "gui"`, `storagevm` one with `image = "storage"`. Each key resolves
//! its name the same way and refuses the same mistakes (an unknown qube, the qube itself, a
//! qube of another image, a name too long for the automatic channel), in the words its
//! [`Service`] gives.

use super::diagnostics::Diagnostics;
use super::hints;
use super::schema::Raw;
use bulkhead_abi::boot_info::NAME_MAX;
use std::ops::Range;

/// The words of one kind of service reference.
pub(super) struct Service {
    /// The key naming the service qube (`guivm`).
    pub key: &'static str,
    /// The image a service qube runs (`gui`).
    pub image: &'static str,
    /// What a service qube is, in "gui qubes are ..." and "is not a gui qube".
    pub role: &'static str,
    /// How a qube naming itself is refused, after its quoted name.
    pub itself: &'static str,
    /// The hint then.
    pub itself_hint: &'static str,
    /// The channel's kind in "the GUI channel would be called ...".
    pub channel: &'static str,
    /// What the channel's name ends with.
    pub suffix: &'static str,
    /// The end of the hint for a qube of another image when no qube runs `image` (`None`:
    /// the list of service qubes, empty).
    pub none_hint: Option<&'static str>,
}

/// The qubes a service reference may name.
pub(super) struct ServiceRefs<'a> {
    service: &'a Service,
    /// Each qube's name, by index.
    pub names: Vec<Option<&'a str>>,
    /// The names given.
    pub listed: Vec<&'a str>,
    /// The qubes that run the service's image.
    providers: Vec<&'a str>,
    /// Whether a name can be checked at all.
    known: bool,
}

impl<'a> ServiceRefs<'a> {
    pub fn new(raw: &'a Raw, service: &'a Service) -> Self {
        let names = raw.qubes.item_names();
        let providers = (raw.qubes.items.iter().zip(&names))
            .filter(|(q, _)| q.text("image").is_some_and(|(i, _)| i == service.image))
            .filter_map(|(_, n)| *n)
            .collect();
        ServiceRefs {
            service,
            listed: names.iter().flatten().copied().collect(),
            names,
            providers,
            known: raw.qubes.known(),
        }
    }

    /// Qube `i`'s reference to `target` (written at `span`, under `key`): the service qube's
    /// index and qube `i`'s name, or `None` with the problem reported (or nothing to check).
    pub fn resolve(
        &self,
        i: usize,
        target: &str,
        span: &Range<usize>,
        key: &str,
        text: &str,
        d: &mut Diagnostics,
    ) -> Option<(usize, &'a str)> {
        let s = self.service;
        let providers = &self.providers;
        let at = self.names.iter().position(|n| *n == Some(target));
        let (message, hint) = match (at, self.names[i]) {
            (None, _) if !self.known => return None,
            (None, _) => (
                format!("unknown {} {}", s.key, hints::quoted(target)),
                if providers.is_empty() {
                    format!(
                        "no qube runs image = \"{}\"; qubes are {}",
                        s.image,
                        hints::list(&self.listed)
                    )
                } else {
                    hints::one_of(&format!("{} qubes", s.role), target, providers)
                },
            ),
            (Some(j), _) if j == i => (
                format!("\"{target}\" {}", s.itself),
                s.itself_hint.to_string(),
            ),
            (Some(j), _) if !providers.contains(&target) || self.names[j].is_none() => (
                format!("\"{target}\" is not a {} qube", s.role),
                format!(
                    "{} names a qube with image = \"{}\"{}",
                    s.key,
                    s.image,
                    match (providers.is_empty(), s.none_hint) {
                        (true, Some(none)) => none.to_string(),
                        _ => format!(": {}", hints::list(providers)),
                    }
                ),
            ),
            (Some(_), Some(me)) if me.len() + s.suffix.len() > NAME_MAX => (
                format!(
                    "the {} channel would be called \"{me}{}\", more than {NAME_MAX} bytes",
                    s.channel, s.suffix
                ),
                format!(
                    "a qube with a {} has a name of at most {} bytes",
                    s.key,
                    NAME_MAX - s.suffix.len()
                ),
            ),
            (Some(_), None) => return None,
            (Some(j), Some(me)) => return Some((j, me)),
        };
        d.push(text, Some(span.clone()), key, message, hint);
        None
    }
}
