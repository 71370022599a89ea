//! The sending end: walk the sources, refuse what cannot be sent, then write the stream.

use super::Summary;
use super::format::{self, Answer, DecodeError, Record};
use crate::log::printable;
use std::collections::BTreeSet;
use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a copy was not (completely) sent.
#[derive(Debug)]
pub enum SendError {
    /// A source that cannot be sent (found before anything was sent): a symbolic link, a
    /// device, fifo or socket, a name that is not a valid one (`format::check_name`), two
    /// sources of the same name.
    Refused { path: PathBuf, why: String },
    /// A source could not be read.
    Io { path: PathBuf, err: io::Error },
    /// A file's size changed between the walk and the copy.
    Changed(PathBuf),
    /// The stream could not be written.
    Write(io::Error),
    /// The receiver's answer could not be read.
    Answer(String),
    /// The receiver refused or failed (code and message, made printable).
    Failed { code: u32, message: String },
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Refused { path, why } => write!(f, "{}: {why}", path.display()),
            SendError::Io { path, err } => write!(f, "{}: {err}", path.display()),
            SendError::Changed(path) => write!(f, "{}: changed while copying", path.display()),
            SendError::Write(err) => write!(f, "sending: {err}"),
            SendError::Answer(why) => write!(f, "the receiver's answer: {why}"),
            SendError::Failed { code, message } => {
                write!(f, "the receiver failed (code {code}): {message}")
            }
        }
    }
}

impl std::error::Error for SendError {}

/// One step of the stream, with the file's path for `File`.
#[derive(Debug)]
enum Step {
    Record(Record),
    File {
        path: PathBuf,
        record: Record,
        size: u64,
    },
}

/// The walked sources, ready to send.
#[derive(Debug)]
pub struct Plan {
    steps: Vec<Step>,
    summary: Summary,
}

/// Walks `paths` (directories recursively, entries sorted by name) and checks that every
/// entry can be sent: a regular file that opens for reading, or a directory that lists.
/// Each path arrives under its last component.
pub fn plan(paths: &[PathBuf]) -> Result<Plan, SendError> {
    let mut plan = Plan {
        steps: Vec::new(),
        summary: Summary::default(),
    };
    let mut names = BTreeSet::new();
    for path in paths {
        let name = path_name(path)?;
        if !names.insert(name.clone()) {
            let why = format!("a second source named {name:?}");
            return Err(SendError::Refused {
                path: path.clone(),
                why,
            });
        }
        plan.walk(path, name)?;
    }
    Ok(plan)
}

/// Sends `paths` ([`plan`], then [`Plan::send`]).
pub fn send(paths: &[PathBuf], out: &mut impl Write) -> Result<Summary, SendError> {
    plan(paths)?.send(out)
}

/// Reads the receiver's answer: its summary (which `qvm-move` compares with what it sent
/// before removing anything), or why it failed.
pub fn read_answer(input: &mut impl Read) -> Result<Summary, SendError> {
    match format::read_answer(input) {
        Ok(Answer::Ok(summary)) => Ok(summary),
        Ok(Answer::Failed { code, message }) => Err(SendError::Failed {
            code,
            message: printable(&message, format::MAX_MESSAGE),
        }),
        Err(DecodeError::Truncated) => Err(SendError::Answer("it ended early".into())),
        Err(DecodeError::Io(e)) => Err(SendError::Answer(e.to_string())),
        Err(DecodeError::Invalid(why)) => Err(SendError::Answer(why)),
        Err(DecodeError::BadName { why, .. }) => Err(SendError::Answer(why.into())),
    }
}

fn path_name(path: &Path) -> Result<String, SendError> {
    let refuse = |why: &str| SendError::Refused {
        path: path.to_path_buf(),
        why: why.into(),
    };
    let name = path
        .file_name()
        .ok_or_else(|| refuse("has no name to send"))?;
    let name = format::check_name(name.as_encoded_bytes())
        .map_err(|why| refuse(&format!("name {why}")))?;
    Ok(name.to_string())
}

/// Opens a regular file to read without following a symbolic link or blocking on a fifo
/// put in its place.
fn open_file(path: &Path) -> io::Result<(File, Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    Ok((file, meta))
}

impl Plan {
    /// What the stream carries.
    pub fn summary(&self) -> Summary {
        self.summary
    }

    fn walk(&mut self, path: &Path, name: String) -> Result<(), SendError> {
        let io = |err| SendError::Io {
            path: path.to_path_buf(),
            err,
        };
        let refuse = |why: &str| SendError::Refused {
            path: path.to_path_buf(),
            why: why.into(),
        };
        let meta = std::fs::symlink_metadata(path).map_err(io)?;
        let mode = meta.permissions().mode() & 0o777;
        let kind = meta.file_type();
        if kind.is_dir() {
            let mut entries = std::fs::read_dir(path)
                .and_then(|d| {
                    d.map(|e| e.map(|e| e.path()))
                        .collect::<io::Result<Vec<_>>>()
                })
                .map_err(io)?;
            entries.sort();
            self.steps.push(Step::Record(Record::Dir { name, mode }));
            self.summary.dirs += 1;
            for entry in entries {
                let name = path_name(&entry)?;
                self.walk(&entry, name)?;
            }
            self.steps.push(Step::Record(Record::Up));
            return Ok(());
        }
        if !kind.is_file() {
            return Err(refuse(match kind {
                k if k.is_symlink() => "is a symbolic link",
                k if k.is_fifo() => "is a fifo",
                k if k.is_socket() => "is a socket",
                _ => "is a device",
            }));
        }
        let (_, opened) = open_file(path).map_err(io)?;
        if !opened.is_file() {
            return Err(refuse("is not a regular file"));
        }
        let size = meta.len();
        let record = Record::File { name, mode, size };
        self.steps.push(Step::File {
            path: path.to_path_buf(),
            record,
            size,
        });
        self.summary.files += 1;
        self.summary.bytes += size;
        Ok(())
    }

    /// Writes the stream to `out`. A file that is no longer what the walk saw stops it
    /// (the receiver then removes that file: it never arrives incomplete).
    pub fn send(&self, out: &mut impl Write) -> Result<Summary, SendError> {
        let mut out = BufWriter::with_capacity(64 << 10, out);
        format::write_header(&mut out).map_err(SendError::Write)?;
        for step in &self.steps {
            match step {
                Step::Record(record) => {
                    format::write_record(&mut out, record).map_err(SendError::Write)?;
                }
                Step::File { path, record, size } => {
                    let io = |err| SendError::Io {
                        path: path.clone(),
                        err,
                    };
                    let (file, meta) = open_file(path).map_err(io)?;
                    if !meta.is_file() || meta.len() != *size {
                        return Err(SendError::Changed(path.clone()));
                    }
                    format::write_record(&mut out, record).map_err(SendError::Write)?;
                    let mut data = file.take(*size);
                    let sent = copy(&mut data, &mut out).map_err(|e| match e {
                        Copy::Read(e) => io(e),
                        Copy::Write(e) => SendError::Write(e),
                    })?;
                    let mut more = [0; 1];
                    if sent != *size || data.into_inner().read(&mut more).map_err(io)? != 0 {
                        return Err(SendError::Changed(path.clone()));
                    }
                }
            }
        }
        format::write_record(&mut out, &Record::End).map_err(SendError::Write)?;
        out.flush().map_err(SendError::Write)?;
        Ok(self.summary)
    }
}

enum Copy {
    Read(io::Error),
    Write(io::Error),
}

/// `io::copy`, telling a read error from a write error.
fn copy(from: &mut impl Read, to: &mut impl Write) -> Result<u64, Copy> {
    let mut buf = vec![0; 64 << 10];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Copy::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(Copy::Write)?;
        total += n as u64;
    }
}
