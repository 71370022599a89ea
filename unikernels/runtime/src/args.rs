//! The argument string a qube gets from the system description: words separated by
//! whitespace, each either `key=value` or a bare `flag`.
//!
//! `"mode=heartbeat period_ms=20 verbose"` has the keys `mode` and `period_ms` and the flag
//! `verbose`. A value runs to the next whitespace and may itself contain `=`
//! (`mode=exit=3` has the key `mode` with the value `exit=3`). When a key repeats, the
//! first occurrence wins.

use core::str::FromStr;

/// One word of the argument string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arg<'a> {
    /// The part before the first `=`, or the whole word.
    pub key: &'a str,
    /// The part after the first `=`; `None` for a bare flag.
    pub value: Option<&'a str>,
}

/// A parsed view of an argument string (it borrows the string; nothing is allocated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Args<'a> {
    text: &'a str,
}

impl<'a> Args<'a> {
    /// Wraps an argument string.
    pub const fn new(text: &'a str) -> Args<'a> {
        Args { text }
    }

    /// The whole string, as given.
    pub const fn as_str(&self) -> &'a str {
        self.text
    }

    /// True when there are no words.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Every word, in order.
    pub fn iter(&self) -> impl Iterator<Item = Arg<'a>> + 'a {
        self.text
            .split_whitespace()
            .map(|word| match word.split_once('=') {
                Some((key, value)) => Arg {
                    key,
                    value: Some(value),
                },
                None => Arg {
                    key: word,
                    value: None,
                },
            })
    }

    /// The value of the first `key=value` word with this key.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.iter()
            .find(|a| a.key == key && a.value.is_some())
            .and_then(|a| a.value)
    }

    /// True when `key` appears, as a bare flag or with a value.
    pub fn has(&self, key: &str) -> bool {
        self.iter().any(|a| a.key == key)
    }

    /// A switch `key=on` or `key=off`: `None` when absent, `Some(Ok(on))`, or
    /// `Some(Err(value))` for any other value (`""` for a bare `key`). The first word with
    /// this key decides, flag or not.
    pub fn on_off(&self, key: &str) -> Option<Result<bool, &'a str>> {
        let arg = self.iter().find(|a| a.key == key)?;
        Some(match arg.value {
            Some("on") => Ok(true),
            Some("off") => Ok(false),
            other => Err(other.unwrap_or("")),
        })
    }

    /// The value of `key` parsed as `T`: `None` when absent, `Some(Err(..))` when present but
    /// not a valid `T`.
    pub fn parse<T: FromStr>(&self, key: &str) -> Option<Result<T, T::Err>> {
        self.get(key).map(str::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_blank_strings_have_no_words() {
        assert!(Args::new("").is_empty());
        assert!(Args::new("  \t ").is_empty());
        assert_eq!(Args::new("").get("mode"), None);
    }

    #[test]
    fn keys_values_and_flags() {
        let args = Args::new("mode=heartbeat  period_ms=20 verbose");
        assert_eq!(args.get("mode"), Some("heartbeat"));
        assert_eq!(args.get("period_ms"), Some("20"));
        assert_eq!(args.get("verbose"), None);
        assert!(args.has("verbose"));
        assert!(args.has("mode"));
        assert!(!args.has("period"));
        let words: Vec<Arg<'_>> = args.iter().collect();
        assert_eq!(words.len(), 3);
        assert_eq!(
            words[2],
            Arg {
                key: "verbose",
                value: None
            }
        );
    }

    #[test]
    fn value_keeps_later_equals_signs() {
        let args = Args::new("mode=exit=3");
        assert_eq!(args.get("mode"), Some("exit=3"));
    }

    #[test]
    fn empty_value_is_present_but_empty() {
        let args = Args::new("log= x");
        assert_eq!(args.get("log"), Some(""));
        assert_eq!(
            args.iter().next(),
            Some(Arg {
                key: "log",
                value: Some("")
            })
        );
    }

    #[test]
    fn first_occurrence_wins() {
        assert_eq!(Args::new("a=1 a=2").get("a"), Some("1"));
        // A bare flag does not hide a later value.
        assert_eq!(Args::new("a a=2").get("a"), Some("2"));
    }

    #[test]
    fn switches_are_on_or_off_and_nothing_else() {
        assert_eq!(Args::new("log=info").on_off("irq"), None);
        assert_eq!(Args::new("irq=off").on_off("irq"), Some(Ok(false)));
        assert_eq!(Args::new("a irq=on").on_off("irq"), Some(Ok(true)));
        assert_eq!(Args::new("irq=no").on_off("irq"), Some(Err("no")));
        assert_eq!(Args::new("irq=").on_off("irq"), Some(Err("")));
        assert_eq!(Args::new("irq irq=off").on_off("irq"), Some(Err("")));
        assert_eq!(Args::new("irq=OFF").on_off("irq"), Some(Err("OFF")));
        assert_eq!(Args::new("irqs=off").on_off("irq"), None);
    }

    #[test]
    fn parse_distinguishes_absent_and_invalid() {
        let args = Args::new("n=42 bad=x");
        assert_eq!(args.parse::<u32>("n"), Some(Ok(42)));
        assert!(matches!(args.parse::<u32>("bad"), Some(Err(_))));
        assert!(args.parse::<u32>("missing").is_none());
    }
}
