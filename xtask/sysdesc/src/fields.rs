//! The rules for each field of a `[[qube]]` but its name (names are checked across qubes in
//! `check`). Each function reports its own problems and yields the value only when it is right.

use super::check::memory_choices;
use super::diagnostics::Diagnostics;
use super::schema::Section;
use super::{KNOWN_IMAGES, hints};
use bulkhead_abi::boot_info::ARGS_MAX;
use bulkhead_abi::label::Label;
use bulkhead_abi::manifest::{
    MAX_QUBE_MEMORY_MIB, MIN_QUBE_MEMORY_MIB, QUBE_MEMORY_GRANULE_MIB, QubeKind, RestartPolicy,
};

/// Kinds a description may name.
const KINDS: &[&str] = &["unikernel", "linux"];
/// Restart policies, as written in descriptions.
const RESTARTS: &[&str] = &["never", "on-failure", "always"];

/// Reports a missing required key.
fn missing<T>(q: &Section, key: &str, hint: &str, text: &str, d: &mut Diagnostics) -> Option<T> {
    if q.absent(key) {
        d.push(
            text,
            q.span.clone(),
            q.key(key),
            format!("missing {key}"),
            hint,
        );
    }
    None
}

/// What runs in the qube.
pub(super) fn kind(q: &Section, text: &str, d: &mut Diagnostics) -> Option<QubeKind> {
    let Some((kind, span)) = q.text("kind") else {
        return missing(
            q,
            "kind",
            "add kind = \"unikernel\" (or \"linux\" for an AppVM)",
            text,
            d,
        );
    };
    match kind {
        "unikernel" => Some(QubeKind::Unikernel),
        // The bundle entries are numbered by the compiler.
        "linux" => Some(QubeKind::Linux {
            initrd: 0,
            cmdline: 0,
        }),
        other => d.fail(
            text,
            Some(span),
            q.key("kind"),
            format!("unknown kind {}", hints::quoted(other)),
            hints::one_of("kinds", other, KINDS),
        ),
    }
}

/// The image the qube boots.
pub(super) fn image(q: &Section, text: &str, d: &mut Diagnostics) -> Option<String> {
    let Some((image, span)) = q.text("image") else {
        let hint = format!(
            "add image = \"...\"; images are {}",
            hints::list(KNOWN_IMAGES)
        );
        return missing(q, "image", &hint, text, d);
    };
    if KNOWN_IMAGES.contains(&image) {
        return Some(image.to_string());
    }
    let message = format!("unknown image {}", hints::quoted(image));
    d.fail(
        text,
        Some(span),
        q.key("image"),
        message,
        hints::one_of("images", image, KNOWN_IMAGES),
    )
}

/// The qube's memory in MiB.
pub(super) fn memory(q: &Section, text: &str, d: &mut Diagnostics) -> Option<u32> {
    let Some((mib, span)) = q.number("memory_mib") else {
        let hint = format!(
            "add memory_mib = 8 (a multiple of {QUBE_MEMORY_GRANULE_MIB} from \
             {MIN_QUBE_MEMORY_MIB} to {MAX_QUBE_MEMORY_MIB})"
        );
        return missing(q, "memory_mib", &hint, text, d);
    };
    let message = if mib < i128::from(MIN_QUBE_MEMORY_MIB) {
        format!("{mib} MiB is below the smallest qube, {MIN_QUBE_MEMORY_MIB} MiB")
    } else if mib > i128::from(MAX_QUBE_MEMORY_MIB) {
        format!("{mib} MiB is above the largest qube, {MAX_QUBE_MEMORY_MIB} MiB")
    } else if mib % i128::from(QUBE_MEMORY_GRANULE_MIB) != 0 {
        format!("{mib} MiB is not a multiple of {QUBE_MEMORY_GRANULE_MIB} MiB")
    } else {
        return u32::try_from(mib).ok();
    };
    d.fail(
        text,
        Some(span),
        q.key("memory_mib"),
        message,
        memory_choices(mib),
    )
}

/// The qube's label colour.
pub(super) fn label(q: &Section, text: &str, d: &mut Diagnostics) -> Option<Label> {
    let names = Label::ALL.map(Label::name);
    let Some((label, span)) = q.text("label") else {
        let hint = format!("add label = \"...\"; labels are {}", hints::list(&names));
        return missing(q, "label", &hint, text, d);
    };
    if let Some(l) = Label::from_name(label) {
        return Some(l);
    }
    let message = format!("unknown label {}", hints::quoted(label));
    d.fail(
        text,
        Some(span),
        q.key("label"),
        message,
        hints::one_of("labels", label, &names),
    )
}

/// What the hypervisor does when the qube stops; `never` when not given.
pub(super) fn restart(q: &Section, text: &str, d: &mut Diagnostics) -> Option<RestartPolicy> {
    let Some((restart, span)) = q.text("restart") else {
        return q.absent("restart").then_some(RestartPolicy::Never);
    };
    let policies = [
        RestartPolicy::Never,
        RestartPolicy::OnFailure,
        RestartPolicy::Always,
    ];
    if let Some(p) = policies.into_iter().find(|p| p.name() == restart) {
        return Some(p);
    }
    let message = format!("unknown restart policy {}", hints::quoted(restart));
    let hint = hints::one_of("restart policies", restart, RESTARTS);
    d.fail(text, Some(span), q.key("restart"), message, hint)
}

/// The arguments handed to the qube; empty when not given.
pub(super) fn args(q: &Section, text: &str, d: &mut Diagnostics) -> Option<String> {
    let Some((args, span)) = q.text("args") else {
        return q.absent("args").then(String::new);
    };
    if args.len() <= ARGS_MAX {
        return Some(args.to_string());
    }
    let message = format!("args are {} bytes long, at most {ARGS_MAX} fit", args.len());
    let hint = format!("shorten them by {} bytes", args.len() - ARGS_MAX);
    d.fail(text, Some(span), q.key("args"), message, hint)
}
