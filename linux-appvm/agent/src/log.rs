//! Console lines. Stdout is the console; every line starts with `agent: `. Text that came
//! from a peer (names, commands) is made printable first.

/// `text` with control characters escaped, cut to `max` characters (`...` marks a cut).
pub fn printable(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Prints one console line.
pub fn line(text: &str) {
    println!("agent: {text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_cuts() {
        assert_eq!(printable("ls -l", 10), "ls -l");
        assert_eq!(printable("a\nb\x1b[2J", 20), "a\\nb\\u{1b}[2J");
        assert_eq!(printable("abcdef", 3), "abc...");
    }
}
