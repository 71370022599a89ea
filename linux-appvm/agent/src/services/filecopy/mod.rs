//! `qubes.Filecopy`'s byte stream: what `qvm-copy` / `qvm-move` in one qube send and what
//! lands in `~/QubesIncoming/<source>/` of the other. Pure code over `Read` / `Write` and a
//! folder; the qrexec transport plugs in around it.
//!
//! - [`format`](mod@format): the records (`Dir`, `File` + bytes, `Up`, `End`), each naming one path
//!   component, and the receiver's answer;
//! - [`send`]: walks the sources first ([`plan`]: symbolic links, devices, fifos and sockets
//!   are refused before a byte is sent), then writes the stream; [`read_answer`] gives the
//!   receiver's verdict (`qvm-move` removes the sources only after `Ok` with the summary
//!   it sent);
//! - [`receive`]: reads a stream it does not trust into the incoming folder, within
//!   [`Limits`]; [`answer`] writes its verdict back.
//!
//! The receiver's guarantees, whatever the bytes:
//! - nothing is created, changed or removed outside the incoming folder, and nothing that
//!   existed inside it is changed or removed: directories are entered one name at a time
//!   through directory descriptors (`openat` with `O_NOFOLLOW | O_DIRECTORY`), files are
//!   created with `O_CREAT | O_EXCL | O_NOFOLLOW` under a temporary name and renamed with
//!   `RENAME_NOREPLACE`, so a symbolic link already in the folder (or the folder itself
//!   being one) is never followed and an existing name is never replaced; an existing
//!   directory is merged into, as in Qubes;
//! - only regular files and directories are made: files `0o644`, or `0o755` when the owner
//!   could execute the original, directories `0o755`, both less the umask (no setuid,
//!   setgid, sticky, group- or other-writable bits);
//! - a file appears under its name only complete: a broken or truncated stream, a limit,
//!   a full disk or any write error removes the file being written; files completed
//!   before stay (the answer says why the copy stopped);
//! - [`Limits`]: total bytes, files and directories, depth; names are at most 255 bytes.
//!
//! What it relies on: Linux (`openat`, `renameat2`), and that no other process of the
//! receiving qube races it inside the incoming folder: one that can write there already
//! has the user's rights. The folder's parents (the user's home) are trusted.

pub mod format;
mod receive;
mod send;

pub use receive::{ReceiveError, answer, receive};
pub use send::{Plan, SendError, plan, read_answer, send};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod send_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

/// What a copy moved: files, directories (entered, made or merged) and file bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
}

/// The receiver's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Total file bytes.
    pub max_bytes: u64,
    /// Files and directories (`File` and `Dir` records).
    pub max_entries: u64,
    /// Directories nested below the incoming folder.
    pub max_depth: usize,
}

impl Default for Limits {
    /// 4 GiB, 100 000 entries, 64 levels.
    fn default() -> Limits {
        Limits {
            max_bytes: 4 << 30,
            max_entries: 100_000,
            max_depth: 64,
        }
    }
}
