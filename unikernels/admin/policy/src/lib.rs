//! The qrexec policy engine: the compiled policy table the admin qube gets in its
//! configuration blob, and [`evaluate`], which decides one service call against it.
//!
//! The language is Qubes OS' policy v5, written as `[[policy]]` tables in the system
//! description (`docs/qrexec.md`); `xtask/sysdesc` checks it and compiles it into a [`Table`]
//! whose entries name qubes, tags, service names and arguments by index. The entries are
//! tried in order, the first that matches decides, and a call no entry matches is denied.
//!
//! Everything is bounded (`heapless`), serde-encoded (postcard in the blob) and checked
//! before use ([`Table::check`]); [`evaluate`] never panics, whatever the table holds.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod eval;
mod table;

pub use eval::{Call, Decision, DenyReason, MAX_CANDIDATES, Requested, Resolved, evaluate};
pub use table::{
    Action, Argument, Entry, Qube, Redirect, Service, Source, Table, TableError, Tags, Target,
};

/// Most entries a table holds.
pub const MAX_ENTRIES: usize = 128;
/// Most distinct service names and arguments a table holds (entries share them).
pub const MAX_NAMES: usize = 64;
/// Most qubes a table's indices may name (the hypervisor runs at most 24).
pub const MAX_QUBES: usize = 32;
/// Most distinct tags in a system (one bit each in [`Tags`]).
pub const MAX_TAGS: usize = 32;
/// Longest service name, in bytes.
pub const SERVICE_MAX: usize = 64;
/// Longest service argument, in bytes.
pub const ARGUMENT_MAX: usize = 64;

/// Whether `name` is a service name: 1 to [`SERVICE_MAX`] bytes of `A-Z a-z 0-9 . _ -`
/// (Qubes' characters without `+`, which starts the argument).
pub fn valid_service(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= SERVICE_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Whether `argument` is a service argument: at most [`ARGUMENT_MAX`] bytes of
/// `A-Z a-z 0-9 . _ - +`, possibly none (a call without an argument).
pub fn valid_argument(argument: &str) -> bool {
    argument.len() <= ARGUMENT_MAX
        && argument
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
}

#[cfg(test)]
mod tests;
