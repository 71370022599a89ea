//! `cargo xtask`: the only entry point for people. See the README for the verbs.
#![forbid(unsafe_code)]

mod system;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, run, test and measure Bulkhead")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check a system description and print what it compiles to.
    Check {
        /// System description.
        #[arg(default_value = "systems/default.toml")]
        system: PathBuf,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check { system } => {
            let compiled = system::compile_file(&system)?;
            println!("{}", compiled.summary());
            Ok(())
        }
    }
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.parent().map(PathBuf::from).unwrap_or(dir)
}
