//! Reading the serial console: strip terminal escapes, split `name | text`, and recognise
//! the hypervisor's stable lines (docs/console.md).

/// Removes ANSI/VT escape sequences (colours, cursor moves, OSC titles) and carriage
/// returns, so lines can be matched as plain text.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters and intermediates, then one final byte in '@'..='~'.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC: up to BEL or ST (ESC \).
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' {
                            break;
                        }
                        if c == '\x1b' {
                            chars.next_if_eq(&'\\');
                            break;
                        }
                    }
                }
                // Character-set selection takes one more byte.
                Some('(' | ')' | '*' | '+') => {
                    chars.next();
                }
                // Any other two-byte escape (ESC c, ESC 7, ...), or a lone ESC at the end.
                _ => {}
            },
            '\r' | '\x07' => {}
            c => out.push(c),
        }
    }
    out
}

/// One console line, escapes removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The whole line.
    pub text: String,
    /// Who wrote it (`hv` for the hypervisor, else the qube's name), when the line has the
    /// `name | text` form.
    pub source: Option<String>,
    /// What follows `name | ` (the whole line when there is no source).
    pub body: String,
}

impl Line {
    /// Strips and splits one raw serial line (without its newline).
    pub fn parse(raw: &str) -> Line {
        let text = strip_ansi(raw);
        let (source, body) = match text.split_once(" | ") {
            Some((name, body)) if is_source_name(name.trim()) => {
                (Some(name.trim().to_string()), body.to_string())
            }
            _ => (None, text.clone()),
        };
        Line { text, source, body }
    }

    /// Whether the hypervisor wrote this line.
    pub fn is_hv(&self) -> bool {
        self.source.as_deref() == Some(HV)
    }
}

/// The hypervisor's source name.
pub const HV: &str = "hv";

fn is_source_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// A line of the hypervisor that means something to xtask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HvEvent {
    /// `hv | qube NAME ready`
    Ready(String),
    /// `hv | qube NAME stopped: REASON`
    Stopped {
        /// The qube.
        qube: String,
        /// Why, as the hypervisor put it.
        reason: String,
    },
    /// `hv | qube NAME exited with status N`
    Exited {
        /// The qube.
        qube: String,
        /// Its exit status.
        status: i64,
    },
    /// `hv | qube NAME restarting (attempt K of M)`
    Restarting {
        /// The qube.
        qube: String,
        /// This attempt (from 1).
        attempt: u32,
        /// Most attempts the restart policy allows.
        of: u32,
    },
    /// `hv | panic: MESSAGE`: the hypervisor itself failed.
    Panic(String),
    /// `hv | halting`
    Halting,
    /// `hv | all qubes stopped; idle`: nothing will run any more.
    Idle,
}

impl HvEvent {
    /// Recognises a stable hypervisor line; anything else is `None`.
    pub fn recognise(line: &Line) -> Option<HvEvent> {
        if !line.is_hv() {
            return None;
        }
        let body = line.body.trim_end();
        if let Some(message) = body.strip_prefix("panic:") {
            return Some(HvEvent::Panic(message.trim().to_string()));
        }
        match body {
            "halting" => return Some(HvEvent::Halting),
            "all qubes stopped; idle" => return Some(HvEvent::Idle),
            _ => {}
        }
        let rest = body.strip_prefix("qube ")?;
        let (qube, what) = rest.split_once(' ')?;
        let qube = qube.to_string();
        if what == "ready" {
            return Some(HvEvent::Ready(qube));
        }
        if let Some(reason) = what.strip_prefix("stopped:") {
            return Some(HvEvent::Stopped {
                qube,
                reason: reason.trim().to_string(),
            });
        }
        if let Some(status) = what.strip_prefix("exited with status ") {
            return Some(HvEvent::Exited {
                qube,
                status: status.trim().parse().ok()?,
            });
        }
        let counts = what
            .strip_prefix("restarting (attempt ")?
            .strip_suffix(')')?;
        let (attempt, of) = counts.split_once(" of ")?;
        Some(HvEvent::Restarting {
            qube,
            attempt: attempt.parse().ok()?,
            of: of.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(raw: &str) -> Option<HvEvent> {
        HvEvent::recognise(&Line::parse(raw))
    }

    #[test]
    fn strips_escapes() {
        assert_eq!(strip_ansi("\x1b[1;32mhv\x1b[0m | hi\r"), "hv | hi");
        assert_eq!(strip_ansi("\x1b]0;title\x07a\x1b]2;t\x1b\\b"), "ab");
        assert_eq!(strip_ansi("\x1b(Bx\x1bcy\x1b[?25lz\x1b"), "xyz");
        assert_eq!(strip_ansi("plain | text"), "plain | text");
        assert_eq!(strip_ansi("\x1b[38;5;208mé\x1b[m"), "é");
    }

    #[test]
    fn splits_source_and_body() {
        let l = Line::parse("\x1b[35mnet\x1b[0m   | link up | eth0");
        assert_eq!(l.source.as_deref(), Some("net"));
        assert_eq!(l.body, "link up | eth0");
        let l = Line::parse("SeaBIOS (version 1.16)");
        assert_eq!(
            (l.source, l.body.as_str()),
            (None, "SeaBIOS (version 1.16)")
        );
        assert_eq!(Line::parse("a b | c").source, None);
    }

    #[test]
    fn recognises_ready_with_and_without_colour() {
        let want = Some(HvEvent::Ready("net".into()));
        assert_eq!(hv("hv | qube net ready"), want);
        assert_eq!(hv("\x1b[1;36mhv\x1b[0m | qube net ready\r"), want);
        assert_eq!(
            hv("\x1b[36mhv\x1b[0m | qube \x1b[32mnet\x1b[0m ready"),
            want
        );
        assert_eq!(
            hv("net | qube net ready"),
            None,
            "only the hypervisor speaks for qubes"
        );
        assert_eq!(hv("hv | qube net ready now"), None);
    }

    #[test]
    fn recognises_the_other_stable_lines() {
        assert_eq!(
            hv("hv | qube usb stopped: page fault at 0x1000"),
            Some(HvEvent::Stopped {
                qube: "usb".into(),
                reason: "page fault at 0x1000".into()
            })
        );
        assert_eq!(
            hv("hv | qube gui exited with status -3"),
            Some(HvEvent::Exited {
                qube: "gui".into(),
                status: -3
            })
        );
        assert_eq!(
            hv("hv | qube net restarting (attempt 2 of 5)"),
            Some(HvEvent::Restarting {
                qube: "net".into(),
                attempt: 2,
                of: 5
            })
        );
        assert_eq!(
            hv("hv | panic: out of frames"),
            Some(HvEvent::Panic("out of frames".into()))
        );
        assert_eq!(hv("\x1b[31mhv\x1b[0m | halting"), Some(HvEvent::Halting));
        assert_eq!(
            hv("hv       | all qubes stopped; idle"),
            Some(HvEvent::Idle)
        );
        assert_eq!(hv("hv | qube net restarting (attempt x of 5)"), None);
        assert_eq!(hv("hv | booting on AMD SVM"), None);
    }
}
