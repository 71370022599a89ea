//! The agent of a Linux AppVM, started by the template's `/init`: reads the qube's settings
//! from the kernel command line and runs [`bulkhead_agent::agent`] (channels, network,
//! services, "agent: ready"). It returns only when a disposable is done and power-off failed.

use bulkhead_agent::{agent, config, log};
use std::process::ExitCode;

fn main() -> ExitCode {
    log::line(&format!("bulkhead-agent {}", env!("CARGO_PKG_VERSION")));
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let settings = config::Settings::parse(&cmdline);
    match agent::run(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::line(&format!("stopped: {e}"));
            ExitCode::FAILURE
        }
    }
}
