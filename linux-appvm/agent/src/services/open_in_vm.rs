//! `qubes.OpenInVM`, the target side of `qvm-open-in-dvm`: the call's stdin is
//!
//! ```text
//! request = len:u16 (little-endian, at most COMMAND_MAX) utf8*len   the command line
//!           filecopy-stream                                         exactly one file
//! ```
//!
//! The file is received into `<home>/QubesIncoming/<source>/` (as `qubes.Filecopy` does:
//! an existing name is refused), then `sh -c '<command> "$1"' sh <path>` runs with the
//! call's stdout and stderr (stdin `/dev/null`): the command line as the caller wrote it,
//! the file's path as its last argument, never parsed by the shell. An empty command line
//! means [`DEFAULT_COMMAND`]. The command's exit code ends the call; a request that is not
//! one says why on stderr and exits 1.

use super::call::{CallInfo, CallPipes, Finish, Worker, spawn_thread, tell};
use super::filecopy::format::{self, Record};
use super::filecopy::{self, Limits, ReceiveError};
use crate::log::{line, printable};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Longest command line, in bytes.
pub const COMMAND_MAX: usize = 4096;
/// The command when the caller gives none: the file's contents come back.
pub const DEFAULT_COMMAND: &str = "cat";

/// Writes the request's command line (the file copy stream follows).
pub fn write_command(out: &mut impl Write, command: &str) -> io::Result<()> {
    if command.len() > COMMAND_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a command line of more than {COMMAND_MAX} bytes"),
        ));
    }
    out.write_all(&(command.len() as u16).to_le_bytes())?;
    out.write_all(command.as_bytes())
}

/// Reads the request's command line ([`DEFAULT_COMMAND`] for an empty one).
pub fn read_command(input: &mut impl Read) -> Result<String, String> {
    let mut len = [0u8; 2];
    input
        .read_exact(&mut len)
        .map_err(|e| format!("reading the command line: {e}"))?;
    let len = u16::from_le_bytes(len) as usize;
    if len > COMMAND_MAX {
        return Err(format!(
            "a command line of {len} bytes (at most {COMMAND_MAX})"
        ));
    }
    let mut bytes = vec![0; len];
    input
        .read_exact(&mut bytes)
        .map_err(|e| format!("reading the command line: {e}"))?;
    let command = String::from_utf8(bytes).map_err(|_| "a command line that is not UTF-8")?;
    if command.contains('\0') {
        return Err("a command line with a NUL".into());
    }
    Ok(match command.trim() {
        "" => DEFAULT_COMMAND.to_string(),
        _ => command,
    })
}

/// Receives the one file of a copy stream into `folder`; its path.
pub fn receive_one(input: &mut impl Read, folder: &Path) -> Result<PathBuf, String> {
    let mut head = Vec::new();
    let decoded = format::read_header(input).and_then(|()| format::read_record(input));
    let record = decoded.map_err(|e| ReceiveError::from(e).to_string())?;
    let Record::File { name, .. } = &record else {
        return Err("the copy stream must hold one file".into());
    };
    let name = name.clone();
    // Put back what was read, and let the receiver check it all.
    let written =
        format::write_header(&mut head).and_then(|()| format::write_record(&mut head, &record));
    written.map_err(|e| e.to_string())?;
    let limits = Limits {
        max_entries: 1,
        ..Limits::default()
    };
    let summary = filecopy::receive(&mut head.as_slice().chain(input), folder, limits)
        .map_err(|e| e.to_string())?;
    if summary.files != 1 {
        return Err("the copy stream must hold one file".into());
    }
    Ok(folder.join(name))
}

/// Starts receiving the file; the command then runs in its place.
pub fn start(info: &CallInfo, pipes: CallPipes) -> io::Result<Worker> {
    let call = info.clone();
    spawn_thread(info, move || {
        let info = call;
        let CallPipes {
            stdin,
            stdout,
            mut stderr,
        } = pipes;
        let mut input = io::BufReader::new(stdin);
        let request = read_command(&mut input)
            .and_then(|command| Ok((receive_one(&mut input, &info.incoming())?, command)));
        drop(input);
        let (path, command) = match request {
            Ok(r) => r,
            Err(why) => {
                tell(&mut stderr, &format!("qubes.OpenInVM: {why}"));
                return Finish::Code(1);
            }
        };
        line(&format!(
            "qrexec: call {}: opening {} from {} with {}",
            info.call,
            path.display(),
            info.source,
            printable(&command, 80)
        ));
        let started = info
            .command(super::vmshell::SHELL)
            .arg("-c")
            .arg(format!("{command} \"$1\""))
            .arg("sh")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn();
        match started {
            Ok(child) => Finish::Process(child),
            Err(e) => {
                line(&format!(
                    "qrexec: call {}: cannot start the command: {e}",
                    info.call
                ));
                Finish::Code(127)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::filecopy::plan;

    fn request(command: &str, paths: &[PathBuf]) -> Vec<u8> {
        let mut out = Vec::new();
        write_command(&mut out, command).unwrap();
        plan(paths).unwrap().send(&mut out).unwrap();
        out
    }

    #[test]
    fn one_file_arrives_and_anything_else_is_refused() {
        let root = std::env::temp_dir().join(format!("open-in-vm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (src, folder) = (root.join("src"), root.join("in"));
        std::fs::create_dir_all(src.join("dir")).unwrap();
        std::fs::write(src.join("a.txt"), b"alpha").unwrap();
        std::fs::write(src.join("b.txt"), b"beta").unwrap();
        let bytes = request("", &[src.join("a.txt")]);
        let mut input = &bytes[..];
        assert_eq!(read_command(&mut input).unwrap(), DEFAULT_COMMAND);
        assert_eq!(
            receive_one(&mut input, &folder).unwrap(),
            folder.join("a.txt")
        );
        assert_eq!(std::fs::read(folder.join("a.txt")).unwrap(), b"alpha");
        // A folder, or two files: refused (the second file never arrives).
        let bytes = request("less", &[src.join("dir")]);
        let mut input = &bytes[..];
        assert_eq!(read_command(&mut input).unwrap(), "less");
        assert!(receive_one(&mut input, &folder).is_err());
        let bytes = request("cat", &[src.join("b.txt"), src.join("dir")]);
        let mut input = &bytes[..];
        read_command(&mut input).unwrap();
        assert!(
            receive_one(&mut input, &folder)
                .unwrap_err()
                .contains("limit")
        );
        assert!(!folder.join("dir").exists());
        // Command lines the protocol refuses.
        assert!(read_command(&mut &[0xff, 0xff][..]).is_err());
        assert!(read_command(&mut &[2, 0, 0xc3, 0x28][..]).is_err());
        assert!(read_command(&mut &[1, 0][..]).is_err());
        assert!(write_command(&mut Vec::new(), &"x".repeat(COMMAND_MAX + 1)).is_err());
        let _ = std::fs::remove_dir_all(&root);
    }
}
