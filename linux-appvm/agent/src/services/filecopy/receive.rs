//! The receiving end: a stream from another qube, treated as hostile, into the incoming
//! folder (the guarantees are in the module's documentation, `filecopy`).

use super::format::{self, Answer, DecodeError, Record};
use super::{Limits, Summary};
use crate::sys::at;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// How many temporary names are tried before giving up (leftovers of earlier crashes).
const PART_TRIES: u32 = 1000;

/// Why a copy stopped. Files completed before stay.
#[derive(Debug)]
pub enum ReceiveError {
    /// The stream ended early.
    Truncated,
    /// Bytes that are not a stream (magic, version, record, `Up` or `End` out of place).
    Broken(String),
    BadName {
        name: String,
        why: &'static str,
    },
    /// A limit was hit (which, and the value).
    Limit(String),
    /// The path (inside the incoming folder) exists: a file, or not a directory where a
    /// directory goes (a symbolic link included).
    Exists(String),
    /// No space (or quota) left while writing the file at this path.
    DiskFull(String),
    Io {
        what: String,
        err: io::Error,
    },
}

impl ReceiveError {
    /// The code in the answer ([`format::OK`] is success).
    pub fn code(&self) -> u32 {
        match self {
            ReceiveError::Truncated | ReceiveError::Broken(_) => format::BROKEN,
            ReceiveError::BadName { .. } => format::BAD_NAME,
            ReceiveError::Limit(_) => format::LIMIT,
            ReceiveError::Exists(_) => format::EXISTS,
            ReceiveError::DiskFull(_) => format::DISK_FULL,
            ReceiveError::Io { .. } => format::IO,
        }
    }
}

impl fmt::Display for ReceiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReceiveError::Truncated => write!(f, "the stream ended early"),
            ReceiveError::Broken(why) => write!(f, "broken stream: {why}"),
            ReceiveError::BadName { name, why } => write!(f, "refused name {name:?}: {why}"),
            ReceiveError::Limit(what) => write!(f, "limit reached: {what}"),
            ReceiveError::Exists(path) => write!(f, "{path} already exists"),
            ReceiveError::DiskFull(path) => write!(f, "no space left writing {path}"),
            ReceiveError::Io { what, err } => write!(f, "{what}: {err}"),
        }
    }
}

impl std::error::Error for ReceiveError {}

impl From<DecodeError> for ReceiveError {
    fn from(e: DecodeError) -> ReceiveError {
        match e {
            DecodeError::Truncated => ReceiveError::Truncated,
            DecodeError::Io(err) => ReceiveError::Io {
                what: "reading the stream".into(),
                err,
            },
            DecodeError::Invalid(why) => ReceiveError::Broken(why),
            DecodeError::BadName { name, why } => ReceiveError::BadName { name, why },
        }
    }
}

/// Writes the answer for `result` (what [`receive`] returned) to the sender.
pub fn answer(out: &mut impl Write, result: &Result<Summary, ReceiveError>) -> io::Result<()> {
    let answer = match result {
        Ok(summary) => Answer::Ok(*summary),
        Err(e) => Answer::Failed {
            code: e.code(),
            message: e.to_string(),
        },
    };
    format::write_answer(out, &answer)
}

/// Reads one copy from `input` into `incoming` (made if missing; its parents are trusted,
/// it must not be a symbolic link itself). Reads nothing after `End`.
pub fn receive(
    input: &mut impl Read,
    incoming: &Path,
    limits: Limits,
) -> Result<Summary, ReceiveError> {
    receive_with(input, incoming, limits, &mut |f, bytes| f.write_all(bytes))
}

/// How a file's bytes are written (tests inject a full disk).
pub(super) type WriteFn<'a> = dyn FnMut(&mut File, &[u8]) -> io::Result<()> + 'a;

pub(super) fn receive_with(
    input: &mut impl Read,
    incoming: &Path,
    limits: Limits,
    write: &mut WriteFn<'_>,
) -> Result<Summary, ReceiveError> {
    let root = open_incoming(incoming)?;
    let mut input = BufReader::with_capacity(64 << 10, input);
    format::read_header(&mut input)?;
    let mut r = Receiver {
        dirs: vec![root],
        names: Vec::new(),
        limits,
        entries: 0,
        summary: Summary::default(),
    };
    loop {
        match format::read_record(&mut input)? {
            Record::Dir { name, .. } => r.enter(name)?,
            Record::File { name, mode, size } => r.file(&mut input, &name, mode, size, write)?,
            Record::Up if r.names.is_empty() => return Err(broken("Up at the top")),
            Record::Up => {
                r.dirs.pop();
                r.names.pop();
            }
            Record::End if r.names.is_empty() => return Ok(r.summary),
            Record::End => return Err(broken("End inside a directory")),
        }
    }
}

fn broken(why: &str) -> ReceiveError {
    ReceiveError::Broken(why.into())
}

fn open_incoming(path: &Path) -> Result<File, ReceiveError> {
    let fail = |err| ReceiveError::Io {
        what: format!("the incoming folder {}", path.display()),
        err,
    };
    std::fs::create_dir_all(path).map_err(fail)?;
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(fail)
}

struct Receiver {
    /// The incoming folder, then each directory entered.
    dirs: Vec<File>,
    /// The names of the directories entered.
    names: Vec<String>,
    limits: Limits,
    entries: u64,
    summary: Summary,
}

/// A file being written under a temporary name; removed unless kept.
struct Part<'a> {
    dir: &'a File,
    name: String,
    keep: bool,
}

impl Drop for Part<'_> {
    fn drop(&mut self) {
        if !self.keep {
            let _ = at::unlink_at(self.dir, &self.name);
        }
    }
}

impl Receiver {
    fn path(&self, name: &str) -> String {
        let mut path = self.names.join("/");
        if !path.is_empty() {
            path.push('/');
        }
        path + name
    }

    fn count_entry(&mut self) -> Result<(), ReceiveError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            let max = self.limits.max_entries;
            return Err(ReceiveError::Limit(format!(
                "more than {max} files and directories"
            )));
        }
        Ok(())
    }

    fn enter(&mut self, name: String) -> Result<(), ReceiveError> {
        if self.names.len() >= self.limits.max_depth {
            let max = self.limits.max_depth;
            return Err(ReceiveError::Limit(format!(
                "directories nested deeper than {max}"
            )));
        }
        self.count_entry()?;
        let top = self.dirs.last().expect("the incoming folder");
        let io = |what: &str, err| ReceiveError::Io {
            what: format!("{what} {}", self.path(&name)),
            err,
        };
        match at::mkdir_at(top, &name, 0o755) {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(io("making", e)),
            _ => {}
        }
        let dir = match at::open_dir_at(top, &name) {
            Ok(dir) => dir,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                return Err(ReceiveError::Exists(self.path(&name)));
            }
            Err(e) => return Err(io("opening", e)),
        };
        self.dirs.push(dir);
        self.names.push(name);
        self.summary.dirs += 1;
        Ok(())
    }

    fn file(
        &mut self,
        input: &mut impl Read,
        name: &str,
        mode: u32,
        size: u64,
        write: &mut WriteFn<'_>,
    ) -> Result<(), ReceiveError> {
        self.count_entry()?;
        let path = self.path(name);
        let total = self.summary.bytes.saturating_add(size);
        if total > self.limits.max_bytes {
            let max = self.limits.max_bytes;
            return Err(ReceiveError::Limit(format!(
                "more than {max} bytes (at {path})"
            )));
        }
        let io = |what: &str, err| ReceiveError::Io {
            what: format!("{what} {path}"),
            err,
        };
        let dir = self.dirs.last().expect("the incoming folder");
        if at::exists_at(dir, name).map_err(|e| io("looking up", e))? {
            return Err(ReceiveError::Exists(path));
        }
        let mode = if mode & 0o100 != 0 { 0o755 } else { 0o644 };
        let (mut file, mut part) = create_part(dir, mode).map_err(|e| io("creating", e))?;
        let mut buf = vec![0; (64 << 10).min(size as usize)];
        let mut left = size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let got = match input.read(&mut buf[..want]) {
                Ok(0) => return Err(ReceiveError::Truncated),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io("reading the stream for", e)),
            };
            write(&mut file, &buf[..got]).map_err(|e| match e.raw_os_error() {
                Some(libc::ENOSPC | libc::EDQUOT) => ReceiveError::DiskFull(path.clone()),
                _ => io("writing", e),
            })?;
            left -= got as u64;
        }
        drop(file);
        match at::rename_noreplace_at(dir, &part.name, name) {
            Ok(()) => part.keep = true,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                return Err(ReceiveError::Exists(path));
            }
            Err(e) => return Err(io("naming", e)),
        }
        self.summary.files += 1;
        self.summary.bytes = total;
        Ok(())
    }
}

/// Creates `.filecopy-<pid>-<n>.part` in `dir`, the first `n` free.
fn create_part(dir: &File, mode: u32) -> io::Result<(File, Part<'_>)> {
    let pid = std::process::id();
    for n in 0..PART_TRIES {
        let name = format!(".filecopy-{pid}-{n}.part");
        match at::create_file_at(dir, &name, mode) {
            Ok(file) => {
                let part = Part {
                    dir,
                    name,
                    keep: false,
                };
                return Ok((file, part));
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(libc::EEXIST))
}
