//! The bytes of a file copy (all integers little-endian):
//!
//! ```text
//! stream  = "BHFC" version:u16 record*          (version 1)
//! record  = 1 name mode:u32                     Dir: create or enter the directory `name`
//!         | 2 name mode:u32 size:u64 byte*size  File: the file `name`, then its bytes
//!         | 3                                   Up: leave the directory last entered
//!         | 4                                   End: the copy is complete (at the top level)
//! name    = len:u16 byte*len                    one path component (see `check_name`)
//! answer  = "BHFA" code:u32 (files:u64 dirs:u64 bytes:u64 if code is 0 | len:u16 utf8*len)
//! ```
//!
//! The sender writes the stream, the receiver writes the answer back. A `mode` carries the
//! `rwx` bits of the original (`0o777` at most); the receiver only looks at the owner's x
//! bit of a file's. Nothing follows `End`.

use super::Summary;
use std::io::{self, Read, Write};

pub const MAGIC: [u8; 4] = *b"BHFC";
pub const VERSION: u16 = 1;
pub const ANSWER_MAGIC: [u8; 4] = *b"BHFA";
/// The longest name, in bytes (Linux's `NAME_MAX`).
pub const MAX_NAME: usize = 255;
/// The longest message in an answer, in bytes.
pub const MAX_MESSAGE: usize = 1024;

/// Answer codes: 0 is success, anything else a failure with a message.
pub const OK: u32 = 0;
pub const BROKEN: u32 = 1;
pub const BAD_NAME: u32 = 2;
pub const LIMIT: u32 = 3;
pub const EXISTS: u32 = 4;
pub const DISK_FULL: u32 = 5;
pub const IO: u32 = 6;

const DIR: u8 = 1;
const FILE: u8 = 2;
const UP: u8 = 3;
const END: u8 = 4;

/// One record; a `File`'s `size` bytes follow it in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Dir { name: String, mode: u32 },
    File { name: String, mode: u32, size: u64 },
    Up,
    End,
}

/// The receiver's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Ok(Summary),
    Failed { code: u32, message: String },
}

/// Why bytes could not be read as a stream or an answer.
#[derive(Debug)]
pub enum DecodeError {
    /// The bytes ended early.
    Truncated,
    Io(io::Error),
    /// Bytes that mean nothing here (magic, version, tag, length).
    Invalid(String),
    /// A name `check_name` refuses (shown printable).
    BadName {
        name: String,
        why: &'static str,
    },
}

/// A name is one path component: 1 to 255 bytes of UTF-8, not `.` or `..`, without `/`,
/// NUL or any other control character (it will be shown in terminals and file managers).
pub fn check_name(bytes: &[u8]) -> Result<&str, &'static str> {
    if bytes.is_empty() {
        return Err("empty");
    }
    if bytes.len() > MAX_NAME {
        return Err("longer than 255 bytes");
    }
    if bytes.contains(&b'/') {
        return Err("contains /");
    }
    if bytes.contains(&0) {
        return Err("contains NUL");
    }
    if bytes == b"." || bytes == b".." {
        return Err("is . or ..");
    }
    let name = std::str::from_utf8(bytes).map_err(|_| "not UTF-8")?;
    if name.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    Ok(name)
}

pub fn write_header(w: &mut impl Write) -> io::Result<()> {
    w.write_all(&MAGIC)?;
    w.write_all(&VERSION.to_le_bytes())
}

fn write_name(w: &mut impl Write, name: &str) -> io::Result<()> {
    let len = u16::try_from(name.len()).map_err(|_| io::Error::other("name too long"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(name.as_bytes())
}

/// Writes one record (a `File`'s bytes are the caller's to write next).
pub fn write_record(w: &mut impl Write, record: &Record) -> io::Result<()> {
    match record {
        Record::Dir { name, mode } => {
            w.write_all(&[DIR])?;
            write_name(w, name)?;
            w.write_all(&mode.to_le_bytes())
        }
        Record::File { name, mode, size } => {
            w.write_all(&[FILE])?;
            write_name(w, name)?;
            w.write_all(&mode.to_le_bytes())?;
            w.write_all(&size.to_le_bytes())
        }
        Record::Up => w.write_all(&[UP]),
        Record::End => w.write_all(&[END]),
    }
}

pub fn write_answer(w: &mut impl Write, answer: &Answer) -> io::Result<()> {
    w.write_all(&ANSWER_MAGIC)?;
    match answer {
        Answer::Ok(s) => {
            w.write_all(&OK.to_le_bytes())?;
            for n in [s.files, s.dirs, s.bytes] {
                w.write_all(&n.to_le_bytes())?;
            }
        }
        Answer::Failed { code, message } => {
            w.write_all(&code.to_le_bytes())?;
            let mut end = message.len().min(MAX_MESSAGE);
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            write_name(w, &message[..end])?;
        }
    }
    w.flush()
}

fn fill(r: &mut impl Read, buf: &mut [u8]) -> Result<(), DecodeError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => DecodeError::Truncated,
        _ => DecodeError::Io(e),
    })
}

fn read_array<const N: usize>(r: &mut impl Read) -> Result<[u8; N], DecodeError> {
    let mut buf = [0; N];
    fill(r, &mut buf)?;
    Ok(buf)
}

fn read_u16(r: &mut impl Read) -> Result<u16, DecodeError> {
    read_array(r).map(u16::from_le_bytes)
}

fn read_u32(r: &mut impl Read) -> Result<u32, DecodeError> {
    read_array(r).map(u32::from_le_bytes)
}

fn read_u64(r: &mut impl Read) -> Result<u64, DecodeError> {
    read_array(r).map(u64::from_le_bytes)
}

/// Reads `len:u16 bytes` of at most `max` bytes.
fn read_bytes(r: &mut impl Read, max: usize) -> Result<Vec<u8>, DecodeError> {
    let len = usize::from(read_u16(r)?);
    if len > max {
        return Err(DecodeError::Invalid(format!("length {len} over {max}")));
    }
    let mut buf = vec![0; len];
    fill(r, &mut buf)?;
    Ok(buf)
}

fn read_name(r: &mut impl Read) -> Result<String, DecodeError> {
    let len = usize::from(read_u16(r)?);
    if len > MAX_NAME {
        let why = "longer than 255 bytes";
        return Err(DecodeError::BadName {
            name: format!("({len} bytes)"),
            why,
        });
    }
    let mut buf = vec![0; len];
    fill(r, &mut buf)?;
    match check_name(&buf) {
        Ok(name) => Ok(name.to_string()),
        Err(why) => {
            let name = crate::log::printable(&String::from_utf8_lossy(&buf), 64);
            Err(DecodeError::BadName { name, why })
        }
    }
}

pub fn read_header(r: &mut impl Read) -> Result<(), DecodeError> {
    if read_array::<4>(r)? != MAGIC {
        return Err(DecodeError::Invalid("not a file-copy stream".into()));
    }
    match read_u16(r)? {
        VERSION => Ok(()),
        v => Err(DecodeError::Invalid(format!("version {v}, not {VERSION}"))),
    }
}

pub fn read_record(r: &mut impl Read) -> Result<Record, DecodeError> {
    let [tag] = read_array(r)?;
    Ok(match tag {
        DIR => Record::Dir {
            name: read_name(r)?,
            mode: read_u32(r)?,
        },
        FILE => Record::File {
            name: read_name(r)?,
            mode: read_u32(r)?,
            size: read_u64(r)?,
        },
        UP => Record::Up,
        END => Record::End,
        t => return Err(DecodeError::Invalid(format!("record type {t}"))),
    })
}

pub fn read_answer(r: &mut impl Read) -> Result<Answer, DecodeError> {
    if read_array::<4>(r)? != ANSWER_MAGIC {
        return Err(DecodeError::Invalid("not a file-copy answer".into()));
    }
    match read_u32(r)? {
        OK => Ok(Answer::Ok(Summary {
            files: read_u64(r)?,
            dirs: read_u64(r)?,
            bytes: read_u64(r)?,
        })),
        code => {
            let bytes = read_bytes(r, MAX_MESSAGE)?;
            let message = String::from_utf8_lossy(&bytes).into_owned();
            Ok(Answer::Failed { code, message })
        }
    }
}
