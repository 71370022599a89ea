//! A qube's CPUs. `cpus = [0, 2]`: the physical CPUs it may run on, by the hypervisor's
//! numbers (0 is the boot CPU, then the other processors the firmware lists, in its order).
//! Without the key the hypervisor spreads the qubes over every CPU. A machine with fewer CPUs
//! than a list names is not an error here: the hypervisor ignores a pin that names no CPU it
//! started, and says so on its console. `vcpus = N`: how many virtual CPUs a Linux qube has
//! (1 to [`MAX_VCPUS`], default 1); a unikernel always has one.

use super::diagnostics::Diagnostics;
use super::schema::Section;
use bulkhead_abi::manifest::{MAX_CPUS, MAX_VCPUS, Manifest, QubeKind};

/// The qube's CPU mask (bit `n`: CPU `n`; 0 when not given), when the list is right: not
/// empty, each number below [`MAX_CPUS`], none twice.
pub(super) fn mask(q: &Section, text: &str, d: &mut Diagnostics) -> Option<u32> {
    let Some((cpus, span)) = q.numbers("cpus") else {
        return q.absent("cpus").then_some(0);
    };
    let last = MAX_CPUS - 1;
    if cpus.is_empty() {
        let message = "cpus is empty: the qube could run nowhere";
        let hint = "list the CPUs it may run on, e.g. cpus = [0], or remove cpus to let the \
                    hypervisor choose";
        return d.fail(text, Some(span), q.key("cpus"), message, hint);
    }
    let mut mask = 0u32;
    let mut ok = true;
    for (n, at) in cpus {
        let (message, hint) = match usize::try_from(*n) {
            Ok(cpu) if cpu <= last && mask & 1 << cpu != 0 => (
                format!("CPU {cpu} is listed twice"),
                "name each CPU once".to_string(),
            ),
            Ok(cpu) if cpu <= last => {
                mask |= 1 << cpu;
                continue;
            }
            _ => (
                format!("CPU {n} does not exist: CPUs are numbered 0 to {last}"),
                format!(
                    "use numbers from 0 (the boot CPU) to {last}; the hypervisor starts at \
                     most {MAX_CPUS} CPUs"
                ),
            ),
        };
        d.push(text, Some(at.clone()), q.key("cpus"), message, hint);
        ok = false;
    }
    ok.then_some(mask)
}

/// The qube's number of virtual CPUs (1 when not given), when it is right: a Linux qube may
/// have 1 to [`MAX_VCPUS`], a unikernel says nothing (it has one). With `kind` unknown (a
/// problem already reported) only the range is checked.
pub(super) fn vcpus(
    q: &Section,
    kind: Option<QubeKind>,
    text: &str,
    d: &mut Diagnostics,
) -> Option<u8> {
    let Some((n, span)) = q.number("vcpus") else {
        return q.absent("vcpus").then_some(1);
    };
    let linux = kind.is_none_or(|k| matches!(k, QubeKind::Linux { .. }));
    let (message, hint) = match u8::try_from(n) {
        _ if !linux => (
            "vcpus is for Linux qubes: a unikernel runs on one virtual CPU".to_string(),
            "remove vcpus (cpus = [..] chooses the physical CPUs a qube may run on), or set \
             kind = \"linux\""
                .to_string(),
        ),
        Ok(n) if (1..=MAX_VCPUS).contains(&n) => return Some(n),
        _ if n < 1 => (
            format!("vcpus = {n}: a qube needs at least one virtual CPU"),
            "use vcpus = 1 (the default), or more for a Linux qube that runs work in parallel"
                .to_string(),
        ),
        _ => (
            format!("vcpus = {n} is more than the {MAX_VCPUS} virtual CPUs a qube may have"),
            format!("use a number from 1 to {MAX_VCPUS}"),
        ),
    };
    d.fail(text, Some(span), q.key("vcpus"), message, hint)
}

/// The qubes pinned to CPUs and those with more than one vCPU, for the summary (empty when
/// there are none).
pub(super) fn summary(m: &Manifest) -> String {
    let mut out = pins(m);
    let several: Vec<String> = m
        .qubes
        .iter()
        .filter(|q| q.vcpus > 1)
        .map(|q| format!("{} {}", q.name, q.vcpus))
        .collect();
    if !several.is_empty() {
        if out.is_empty() {
            out.push('\n');
        }
        let others = match several.len() < m.qubes.len() {
            true => "; the other qubes 1",
            false => "",
        };
        out.push_str(&format!("vCPUs: {}{others}\n", several.join("; ")));
    }
    out
}

/// The qubes pinned to CPUs, for the summary (empty when none is).
fn pins(m: &Manifest) -> String {
    let pinned: Vec<String> = m
        .qubes
        .iter()
        .filter(|q| q.cpus != 0)
        .map(|q| {
            let cpus: Vec<String> = (0..MAX_CPUS)
                .filter(|c| q.cpus & 1 << c != 0)
                .map(|c| c.to_string())
                .collect();
            format!("{} on {}", q.name, cpus.join(", "))
        })
        .collect();
    if pinned.is_empty() {
        return String::new();
    }
    format!(
        "\nCPUs: {}; the other qubes anywhere (a pin naming no CPU the machine has is \
         ignored)\n",
        pinned.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use crate::{Diagnostic, compile_str};

    /// A description of one qube of `kind` with `line` (e.g. `cpus = [0, 2]`) added.
    fn with(kind: &str, line: &str) -> String {
        let image = match kind {
            "linux" => "memory_mib = 128",
            _ => "image = \"net\"\nmemory_mib = 8",
        };
        format!(
            "[system]\nram_mib = 256\n\n[[qube]]\nname = \"q\"\nkind = \"{kind}\"\n{image}\n\
             label = \"red\"\n{line}\n"
        )
    }

    fn problems(text: &str) -> Vec<Diagnostic> {
        match compile_str("systems/t.toml", text) {
            Ok(_) => panic!("compiled, but should not have:\n{text}"),
            Err(d) => d.iter().cloned().collect(),
        }
    }

    #[test]
    fn a_list_of_cpus_compiles_to_a_mask() {
        for (line, mask) in [
            ("", 0),
            ("cpus = [0, 2]", 0b101),
            ("cpus = [15, 0x1]", 0x8002),
        ] {
            for kind in ["unikernel", "linux"] {
                let c = compile_str("systems/t.toml", &with(kind, line)).unwrap();
                assert_eq!(c.manifest.qubes[0].cpus, mask, "{kind}: {line}");
            }
        }
        let c = compile_str("systems/t.toml", &with("unikernel", "cpus = [2, 0]")).unwrap();
        assert!(
            c.summary()
                .contains("\nCPUs: q on 0, 2; the other qubes anywhere")
        );
        let c = compile_str("systems/t.toml", &with("unikernel", "")).unwrap();
        assert!(!c.summary().contains("CPUs:"));
    }

    #[test]
    fn every_wrong_cpu_is_reported_where_it_is() {
        let found = problems(&with(
            "unikernel",
            "cpus = [16, -1, 3, 3, 99999999999999999999]",
        ));
        let shown: Vec<String> = found.iter().map(Diagnostic::to_string).collect();
        let expected = [
            "systems/t.toml:10:9: qube \"q\".cpus: CPU 16 does not exist",
            "systems/t.toml:10:13: qube \"q\".cpus: CPU -1 does not exist",
            "systems/t.toml:10:20: qube \"q\".cpus: CPU 3 is listed twice",
            "systems/t.toml:10:23: qube \"q\".cpus: CPU 99999999999999999999 does not exist",
        ];
        assert_eq!(shown.len(), expected.len(), "{shown:#?}");
        for (s, e) in shown.iter().zip(expected) {
            assert!(s.starts_with(e), "{s}\ndoes not start with\n{e}");
        }
        assert!(shown[0].contains("hint: use numbers from 0 (the boot CPU) to 15"));
    }

    #[test]
    fn lists_written_otherwise_have_fixes() {
        let hint = |line: &str| problems(&with("unikernel", line))[0].to_string();
        let cases = [
            ("cpus = []", "cpus is empty"),
            ("cpus = [\"0\", \" 2\"]", "remove the quotes: cpus = [0, 2]"),
            ("cpus = 2", "write it as a list: cpus = [2]"),
            ("cpus = 2", "for 2 virtual CPUs write vcpus = 2"),
            (
                "cpus = \"0,2\"",
                "write it as a list, in brackets: cpus = [0, 2]",
            ),
            ("cpus = [0, \"two\"]", "a list holding string values"),
            ("cpus = [0.5]", "write it as cpus = [0, 2]"),
            ("cpu = [0]", "did you mean cpus?"),
        ];
        for (line, words) in cases {
            let shown = hint(line);
            assert!(shown.contains(words), "{line}: {shown}");
        }
    }

    #[test]
    fn a_linux_qube_has_the_vcpus_it_asks_for() {
        for (line, vcpus) in [
            ("", 1),
            ("vcpus = 1", 1),
            ("vcpus = 2", 2),
            ("vcpus = 8", 8),
        ] {
            let c = compile_str("systems/t.toml", &with("linux", line)).unwrap();
            assert_eq!(c.manifest.qubes[0].vcpus, vcpus, "{line}");
        }
        let c = compile_str("systems/t.toml", &with("unikernel", "")).unwrap();
        assert_eq!(c.manifest.qubes[0].vcpus, 1);
        assert!(!c.summary().contains("vCPUs:"));
        let c = compile_str("systems/t.toml", &with("linux", "vcpus = 2")).unwrap();
        assert!(c.summary().contains("\nvCPUs: q 2\n"), "{}", c.summary());
        let c = compile_str("systems/t.toml", &with("linux", "vcpus = 2\ncpus = [1]")).unwrap();
        assert!(
            c.summary()
                .contains("CPUs: q on 1; the other qubes anywhere")
        );
        assert!(c.summary().contains("\nvCPUs: q 2\n"));
        let two = format!(
            "{}\n[[qube]]\nname = \"u\"\nkind = \"unikernel\"\nimage = \"net\"\n\
             memory_mib = 8\nlabel = \"red\"\n",
            with("linux", "vcpus = 3")
        );
        let c = compile_str("systems/t.toml", &two).unwrap();
        assert!(c.summary().contains("\nvCPUs: q 3; the other qubes 1\n"));
    }

    #[test]
    fn wrong_vcpus_are_reported_naming_the_qube() {
        let cases = [
            (
                "unikernel",
                "vcpus = 1",
                "qube \"q\".vcpus: vcpus is for Linux qubes: a unikernel runs on one virtual CPU",
                "remove vcpus",
            ),
            (
                "unikernel",
                "vcpus = 2",
                "qube \"q\".vcpus: vcpus is for Linux qubes",
                "or set kind = \"linux\"",
            ),
            (
                "linux",
                "vcpus = 0",
                "qube \"q\".vcpus: vcpus = 0: a qube needs at least one virtual CPU",
                "use vcpus = 1",
            ),
            (
                "linux",
                "vcpus = -3",
                "qube \"q\".vcpus: vcpus = -3: a qube needs at least one",
                "use vcpus = 1",
            ),
            (
                "linux",
                "vcpus = 9",
                "qube \"q\".vcpus: vcpus = 9 is more than the 8 virtual CPUs a qube may have",
                "use a number from 1 to 8",
            ),
            (
                "linux",
                "vcpus = 300",
                "qube \"q\".vcpus: vcpus = 300 is more than the 8",
                "use a number from 1 to 8",
            ),
            (
                "linux",
                "vcpus = \"2\"",
                "qube \"q\".vcpus: expected a whole number",
                "remove the quotes: vcpus = 2",
            ),
            (
                "linux",
                "vcpus = 2.0",
                "qube \"q\".vcpus: expected a whole number",
                "vcpus = 2",
            ),
            (
                "linux",
                "vcpu = 2",
                "unknown key \"vcpu\"",
                "did you mean vcpus?",
            ),
        ];
        for (kind, line, message, hint) in cases {
            let found = problems(&with(kind, line));
            assert_eq!(found.len(), 1, "{kind}: {line}: {found:#?}");
            let shown = found[0].to_string();
            // The line the key is on: the last of the description.
            let at = format!("systems/t.toml:{}:", with(kind, line).lines().count());
            assert!(shown.starts_with(&at), "{shown}");
            assert!(shown.contains(message), "{kind}: {line}: {shown}");
            assert!(shown.contains(hint), "{kind}: {line}: {shown}");
        }
        // A misspelt kind is one problem: vcpus is not blamed for it.
        let found = problems(&with("linx", "vcpus = 2"));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].to_string().contains("unknown kind"));
    }
}
