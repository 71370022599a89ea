//! Descriptions as a careless or hostile author might write them: each must be refused
//! quickly, with every problem located and nothing from the file reaching the terminal raw.

use super::*;

/// `qubes` after a `[system]` of 256 MiB.
fn with_qubes(qubes: &str) -> String {
    format!("[system]\nram_mib = 256\n\n{qubes}")
}

/// A unikernel qube named `name` (written as a TOML basic string, escapes allowed) with the
/// extra lines `extra`.
fn qube(name: &str, extra: &str) -> String {
    format!(
        "[[qube]]\nname = \"{name}\"\nkind = \"unikernel\"\nimage = \"testing\"\n\
         memory_mib = 8\nlabel = \"red\"\n{extra}\n"
    )
}

/// The diagnostics as `cargo xtask check` prints them.
fn printed(text: &str) -> (Vec<Diagnostic>, String) {
    match compile_str("systems/t.toml", text) {
        Ok(_) => panic!("compiled, but should not have:\n{text}"),
        Err(d) => (d.iter().cloned().collect(), d.to_string()),
    }
}

/// Qube names holding a terminal escape (clear the screen) and a newline followed by a forged
/// diagnostic, echoed by the netvm checks: each diagnostic stays two lines (problem, hint),
/// with no control character in either.
#[test]
fn names_reach_the_terminal_escaped() {
    let clear = "evil\\u001b[2J\\u001b[H";
    let forged = "x\\nsystems/t.toml:1:1: system: all good";
    let text = with_qubes(&format!(
        "{}{}{}",
        qube(clear, &format!("netvm = \"{clear}\"")),
        qube(forged, "netvm = \"y\""),
        qube("y", &format!("netvm = \"{forged}\"")),
    ));
    let (found, shown) = printed(&text);
    assert!(found.len() >= 3, "{shown}");
    for line in shown.lines() {
        assert!(
            !line.chars().any(|c| c.is_control()),
            "a control character reaches the terminal: {line:?}"
        );
    }
    assert_eq!(shown.lines().count(), 2 * found.len() + 1, "{shown}");
    assert!(
        !shown.lines().any(|l| l.starts_with("systems/t.toml:1:1")),
        "{shown}"
    );
    assert!(shown.contains("\\u{1b}[2J"), "{shown}");
}

/// A file that is not UTF-8 (Latin-1 from an old editor, a truncated character) is refused
/// at its first bad byte, in the key it interrupts.
#[test]
fn a_file_that_is_not_utf8_names_its_first_bad_byte() {
    let mut bytes = with_qubes(&qube("net", "")).into_bytes();
    let at = bytes.windows(5).position(|w| w == b"\"red\"").unwrap() + 2;
    bytes[at] = 0xe9;
    let err = compile_bytes("systems/t.toml", &bytes).unwrap_err();
    let found: Vec<&Diagnostic> = err.iter().collect();
    assert_eq!(found.len(), 1, "{err}");
    assert_eq!(found[0].position, Some((9, 11)), "{err}");
    assert_eq!(found[0].key, "qube[0].label");
    assert!(found[0].message.contains("0xe9"), "{err}");
    // A character cut short at the very end.
    let err = compile_bytes("t.toml", b"[system]\n\xe2\x82").unwrap_err();
    let d = err.iter().next().unwrap();
    assert_eq!(d.position, Some((2, 1)), "{err}");
    assert!(d.message.contains("0xe2 0x82"), "{err}");
}

/// 80 levels of dotted keys: the TOML reader's recursion limit, which it reports without a
/// place, is located at the line and named by its key.
#[test]
fn deep_dotted_keys_are_located() {
    let deep = ["a"; 80].join(".");
    let text = with_qubes(&qube("net", &format!("label.{deep} = 1")));
    let (found, shown) = printed(&text);
    assert_eq!(found.len(), 1, "{shown}");
    assert_eq!(found[0].position, Some((10, 1)), "{shown}");
    assert!(found[0].key.starts_with("qube[0].\"label.a.a"), "{shown}");
    assert!(found[0].message.contains("recursion limit"), "{shown}");
}

/// A ring of `n` qubes, each the netvm of the one before.
fn netvm_ring(n: usize) -> String {
    let qubes: String = (0..n)
        .map(|i| qube(&format!("q{i}"), &format!("netvm = \"q{}\"", (i + 1) % n)))
        .collect();
    with_qubes(&qubes).replace("ram_mib = 256", "ram_mib = 65536")
}

/// A 2,000-qube netvm cycle took about 22 s (a cubic cycle search, and every check ran on
/// qubes that cannot fit): now one problem, the count, at once.
#[test]
fn a_two_thousand_qube_cycle_is_refused_at_once() {
    let text = netvm_ring(2000);
    let started = std::time::Instant::now();
    let (found, shown) = printed(&text);
    let took = started.elapsed();
    assert_eq!(found.len(), 1, "{shown}");
    assert_eq!(found[0].key, "qube \"q24\"");
    assert_eq!(found[0].message, "2000 qubes, at most 24 fit");
    // Tens of milliseconds on a loaded machine, in a debug build; the old search took 20 s.
    assert!(took.as_secs() < 5, "{took:?}");
}

/// A cycle through every qube that fits is named once, shortened.
#[test]
fn a_long_cycle_is_named_once_and_shortened() {
    let (found, shown) = printed(&netvm_ring(24));
    let cycles: Vec<_> = found
        .iter()
        .filter(|d| d.message.starts_with("netvm cycle"))
        .collect();
    assert_eq!(cycles.len(), 1, "{shown}");
    assert_eq!(
        cycles[0].message,
        "netvm cycle: \"q0\" -> \"q1\" -> \"q2\" -> \"q3\" -> \"q4\" -> \"q5\" -> \"q6\" -> ... \
         -> \"q23\" -> \"q0\" (24 qubes)"
    );
    assert_eq!(cycles[0].key, "qube \"q0\".netvm");
}

/// Thousands of channels between two qubes: one problem, the count (each was also a
/// duplicate of every other, found pair by pair).
#[test]
fn thousands_of_channels_are_one_problem() {
    let channels: String = (0..5000)
        .map(|i| {
            format!("[[channel]]\nname = \"c{i}\"\nbetween = [\"a\", \"b\"]\npurpose = \"x\"\n\n")
        })
        .collect();
    let text = with_qubes(&format!("{}{}{channels}", qube("a", ""), qube("b", "")));
    let (found, shown) = printed(&text);
    assert_eq!(found.len(), 1, "{shown}");
    assert_eq!(found[0].key, "channel \"c48\"");
    assert_eq!(found[0].message, "5000 channels, at most 48 fit");
}
