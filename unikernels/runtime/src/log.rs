//! Levelled log lines: `error!`, `warn!`, `info!`, `debug!` print `[level] text`.
//!
//! The hypervisor prefixes every console line with the qube's name, so log lines do not
//! repeat it. Lines above the current level are not formatted at all. The level starts at
//! [`Level::Info`]; the argument `log=LEVEL` (`error`, `warn`, `info`, `debug`) changes it at
//! start-up.

use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};

/// How important a log line is; a lower level is more important.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Something failed.
    Error = 0,
    /// Something is wrong but the qube goes on.
    Warn = 1,
    /// What the qube is doing.
    Info = 2,
    /// Detail for debugging.
    Debug = 3,
}

impl Level {
    /// Every level, most important first.
    pub const ALL: [Level; 4] = [Level::Error, Level::Warn, Level::Info, Level::Debug];

    /// The name used in `log=` and in the line prefix.
    pub const fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    /// Parses a level name (case-insensitive; `warning` is accepted for `warn`).
    pub fn parse(name: &str) -> Option<Level> {
        if name.eq_ignore_ascii_case("warning") {
            return Some(Level::Warn);
        }
        Level::ALL
            .into_iter()
            .find(|l| name.eq_ignore_ascii_case(l.name()))
    }

    const fn from_u8(v: u8) -> Level {
        match v {
            0 => Level::Error,
            1 => Level::Warn,
            2 => Level::Info,
            _ => Level::Debug,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Lines up to and including `level` are printed from now on.
pub fn set_level(level: Level) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// The current level.
pub fn level() -> Level {
    Level::from_u8(MAX_LEVEL.load(Ordering::Relaxed))
}

/// True when a line of `level` would be printed.
pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Prints `[level] text` as one line, if `level` is enabled. The macros call this.
pub fn log(level: Level, args: fmt::Arguments<'_>) {
    if enabled(level) {
        crate::console::write_fmt(format_args!("[{}] {}\n", level.name(), args));
    }
}

/// Logs at [`Level::Error`]: `error!("x = {}", x)`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Error, format_args!($($arg)*)) };
}

/// Logs at [`Level::Warn`].
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Warn, format_args!($($arg)*)) };
}

/// Logs at [`Level::Info`].
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Info, format_args!($($arg)*)) };
}

/// Logs at [`Level::Debug`].
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Debug, format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for l in Level::ALL {
            assert_eq!(Level::parse(l.name()), Some(l));
            assert_eq!(Level::from_u8(l as u8), l);
        }
    }

    #[test]
    fn parse_is_case_insensitive_and_strict() {
        assert_eq!(Level::parse("DEBUG"), Some(Level::Debug));
        assert_eq!(Level::parse("Warning"), Some(Level::Warn));
        assert_eq!(Level::parse("verbose"), None);
        assert_eq!(Level::parse(""), None);
        assert_eq!(Level::parse("info "), None);
    }

    #[test]
    fn filter_follows_the_level() {
        // The only test that touches the global level.
        set_level(Level::Warn);
        assert_eq!(level(), Level::Warn);
        assert!(enabled(Level::Error) && enabled(Level::Warn));
        assert!(!enabled(Level::Info) && !enabled(Level::Debug));
        set_level(Level::Debug);
        assert!(enabled(Level::Debug));
        set_level(Level::Info);
    }
}
