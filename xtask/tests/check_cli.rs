//! `cargo xtask check` as a person runs it, through the built binary.

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `cargo xtask check F | head -1`: the reader closes the pipe after one line; xtask stops
/// writing without a panic and exits with the check's verdict.
#[test]
fn check_into_a_closed_pipe_exits_quietly() {
    for (file, ok) in [
        ("systems/default.toml", true),
        ("systems/broken/bad-label.toml", false),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .current_dir(root())
            .args(["check", file])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the reading ends before xtask writes (it compiles first): the summary goes
        // to standard output, the diagnostics to standard error. A panic would exit with 101.
        drop(child.stdout.take());
        drop(child.stderr.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.success(), ok, "{file}: {:?}", out.status);
        assert_eq!(out.status.code(), Some(if ok { 0 } else { 1 }), "{file}");
    }
}
