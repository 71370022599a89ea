//! The rules for Linux qubes (`kind = "linux"`, AppVMs booting the template `cargo xtask
//! appvm` builds) and for disposables: which keys each kind of qube may have, the template,
//! the extra kernel arguments, the least memory Linux boots in, `disposable = true` (started
//! on request, never restarted; a qube of either kind may be one), and where a Linux qube may stand in the network (a client
//! behind a router: it gets its address on the command line, there is no DHCP client).

use super::diagnostics::Diagnostics;
use super::hints;
use super::network::Links;
use super::schema::{Raw, Section};
use bulkhead_abi::manifest::{QubeKind, RestartPolicy, StartPolicy};

/// The templates a Linux qube may name (`template = "..."`), the first the default.
pub const TEMPLATES: &[&str] = &["debian"];
/// The least memory a Linux qube may have, in MiB (the cloud kernel and the initramfs
/// unpacked in RAM).
pub const MIN_MEMORY_MIB: u32 = 64;
/// The longest `kernel_args`, in bytes.
pub const KERNEL_ARGS_MAX: usize = 512;

/// What a Linux qube adds to the common fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Linux {
    /// The template it boots.
    pub template: String,
    /// Extra kernel command-line text, appended to what the compiler writes.
    pub kernel_args: String,
}

/// Keys only unikernels have, and why a Linux qube does not.
const UNIKERNEL_ONLY: &[(&str, &str)] = &[
    (
        "image",
        "a Linux qube boots its template's kernel: remove image (choose the template with \
         template = \"debian\")",
    ),
    (
        "args",
        "a Linux qube takes kernel command-line text instead: write kernel_args = \"...\"",
    ),
    (
        "devices",
        "Linux qubes cannot own PCI devices yet: give the device to a unikernel (e.g. image \
         = \"net\" or \"usb\") and remove devices here",
    ),
    (
        "io_ports",
        "a Linux qube's I/O ports are its guest platform's, emulated by the hypervisor: give \
         the ports to a unikernel (e.g. image = \"gui\") and remove io_ports here",
    ),
    (
        "framebuffer",
        "a Linux qube shows its windows through the gui qube: give the framebuffer to the \
         gui qube (image = \"gui\") and remove framebuffer here",
    ),
];
/// Keys only Linux qubes have.
const LINUX_ONLY: &[&str] = &["template", "kernel_args"];

/// Whether the qube says `kind = "linux"`.
pub(super) fn is_linux(q: &Section) -> bool {
    q.text("kind").is_some_and(|(k, _)| k == "linux")
}

/// Whether the qube says `disposable = true`.
pub(super) fn is_disposable(q: &Section) -> bool {
    q.flag("disposable").is_some_and(|(b, _)| b)
}

/// Reports each key of `q` that its kind does not have. False if there was one.
pub(super) fn foreign_keys(q: &Section, kind: QubeKind, text: &str, d: &mut Diagnostics) -> bool {
    let mut ok = true;
    let span_of = |key: &str| {
        q.text(key)
            .map(|(_, s)| s)
            .or_else(|| q.names(key).map(|(_, s)| s))
            .or_else(|| q.flag(key).map(|(_, s)| s))
            .or_else(|| q.span.clone())
    };
    match kind {
        QubeKind::Linux { .. } => {
            for (key, hint) in UNIKERNEL_ONLY {
                if !q.absent(key) {
                    let message = format!("{key} is for unikernel qubes, this one is Linux");
                    d.push(text, span_of(key), q.key(key), message, *hint);
                    ok = false;
                }
            }
        }
        QubeKind::Unikernel => {
            for key in LINUX_ONLY {
                if !q.absent(key) {
                    let message = format!("{key} is for Linux qubes, this one is a unikernel");
                    let hint = format!(
                        "set kind = \"linux\" for an AppVM (no image, args or devices then), \
                         or remove {key}"
                    );
                    d.push(text, span_of(key), q.key(key), message, hint);
                    ok = false;
                }
            }
        }
    }
    ok
}

/// The Linux fields of a Linux qube: its template and kernel arguments, and its memory
/// (`memory`, already checked in general) against [`MIN_MEMORY_MIB`].
pub(super) fn fields(
    q: &Section,
    memory: Option<u32>,
    text: &str,
    d: &mut Diagnostics,
) -> Option<Linux> {
    let mut ok = true;
    if let (Some(mib), Some((_, span))) = (memory, q.number("memory_mib"))
        && mib < MIN_MEMORY_MIB
    {
        let message = format!("{mib} MiB is too little for Linux, at least {MIN_MEMORY_MIB} MiB");
        let hint =
            format!("give the AppVM memory_mib = {MIN_MEMORY_MIB} or more (256 is comfortable)");
        d.push(text, Some(span), q.key("memory_mib"), message, hint);
        ok = false;
    }
    let template = match q.text("template") {
        Some((t, _)) if TEMPLATES.contains(&t) => Some(t.to_string()),
        Some((t, span)) => {
            let message = format!("unknown template {}", hints::quoted(t));
            let hint = format!(
                "{}; `cargo xtask appvm` builds it",
                hints::one_of("templates", t, TEMPLATES)
            );
            d.fail(text, Some(span), q.key("template"), message, hint)
        }
        None => q.absent("template").then(|| TEMPLATES[0].to_string()),
    };
    let kernel_args = match q.text("kernel_args") {
        Some((args, span)) => match kernel_args_problem(args) {
            Some((message, hint)) => d.fail(text, Some(span), q.key("kernel_args"), message, hint),
            None => Some(args.split_whitespace().collect::<Vec<_>>().join(" ")),
        },
        None => q.absent("kernel_args").then(String::new),
    };
    let linux = Linux {
        template: template?,
        kernel_args: kernel_args?,
    };
    ok.then_some(linux)
}

/// What is wrong with `kernel_args`, and a fix, if anything.
fn kernel_args_problem(args: &str) -> Option<(String, String)> {
    if args.len() > KERNEL_ARGS_MAX {
        let message = format!(
            "kernel_args are {} bytes long, at most {KERNEL_ARGS_MAX} fit",
            args.len()
        );
        return Some((
            message,
            format!("shorten them by {} bytes", args.len() - KERNEL_ARGS_MAX),
        ));
    }
    if let Some(c) = args.chars().find(|c| !(' '..='~').contains(c)) {
        let message = format!("kernel_args hold {c:?}, which is not printable ASCII");
        let hint = "write the kernel parameters on one line, separated by spaces".to_string();
        return Some((message, hint));
    }
    let reserved = args
        .split_whitespace()
        .find(|w| w.starts_with("bulkhead.") || w.starts_with("tsc_early_khz"))?;
    let message = format!("kernel_args set {reserved:?}, which the system sets itself");
    let hint = "bulkhead.* come from name, template and netvm, and the hypervisor appends \
                tsc_early_khz; remove it"
        .to_string();
    Some((message, hint))
}

/// When the qube starts: [`StartPolicy::OnRequest`] for `disposable = true` (a Linux qube or
/// a unikernel), which must not restart (`restart` is its checked policy).
pub(super) fn start(
    q: &Section,
    restart: Option<RestartPolicy>,
    text: &str,
    d: &mut Diagnostics,
) -> Option<StartPolicy> {
    match q.flag("disposable") {
        Some((true, _)) => {
            if let (Some(r), Some((_, span))) = (restart, q.text("restart"))
                && r != RestartPolicy::Never
            {
                let message = format!(
                    "a disposable cannot restart (restart = \"{}\"): each run starts from \
                     scratch when a qube asks for it",
                    r.name()
                );
                let hint = "remove restart, or set restart = \"never\"";
                return d.fail(text, Some(span), q.key("restart"), message, hint);
            }
            Some(StartPolicy::OnRequest)
        }
        Some((false, _)) => Some(StartPolicy::AtBoot),
        None => q.absent("disposable").then_some(StartPolicy::AtBoot),
    }
}

/// Where Linux qubes stand in the network: behind a router (their netvm has a netvm of its
/// own), and never a netvm themselves. False if a rule is broken (reported).
pub(super) fn network(raw: &Raw, links: &Links, text: &str, d: &mut Diagnostics) -> bool {
    let qubes = &raw.qubes.items;
    let name = |i: usize| qubes[i].text("name").map_or("?", |(n, _)| n);
    let mut ok = true;
    for (i, q) in qubes.iter().enumerate() {
        let Some(n) = links.netvm[i] else {
            continue;
        };
        let span = q.text("netvm").map(|(_, s)| s);
        if is_linux(&qubes[n]) {
            let message = format!("\"{}\" is a Linux qube and cannot be a netvm yet", name(n));
            let hint = "route through a unikernel firewall (image = \"firewall\") instead";
            d.push(text, span, q.key("netvm"), message, hint);
            ok = false;
        } else if is_linux(q) && links.ok && links.netvm[n].is_none() {
            let message = format!(
                "a Linux qube needs a router as netvm, but \"{}\" owns the network card",
                name(n)
            );
            let hint = "the AppVM gets its address on its command line, not by DHCP: set \
                        netvm to a qube whose netvm is the card owner (like sys-firewall)";
            d.push(text, span, q.key("netvm"), message, hint);
            ok = false;
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_args_rules() {
        assert!(kernel_args_problem("").is_none());
        assert!(kernel_args_problem("mitigations=auto  quiet").is_none());
        assert!(kernel_args_problem(&"a".repeat(KERNEL_ARGS_MAX + 1)).is_some());
        assert!(kernel_args_problem("a\nb").is_some());
        assert!(kernel_args_problem("é").is_some());
        let (message, _) = kernel_args_problem("x bulkhead.ip=1.2.3.4/24").unwrap();
        assert!(message.contains("bulkhead.ip=1.2.3.4/24"), "{message}");
        assert!(kernel_args_problem("tsc_early_khz=1").is_some());
    }
}
