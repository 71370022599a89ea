//! The agent of a Linux AppVM, started by the template's `/init`: reads the qube's settings
//! from the kernel command line and runs [`bulkhead_agent::agent`] (channels, network,
//! services, "agent: ready"). It returns only when a disposable is done and power-off failed.
//!
//! `bulkhead-agent xstate-probe SECONDS` runs the self-test of [`bulkhead_agent::xstate`]
//! instead (the template's `appvm.selftest=xstate`); it exits 1 when a register changed.
//! `bulkhead-agent cpu-probe` runs the self-test of [`bulkhead_agent::cpuprobe`] (the
//! template's `appvm.selftest=cpus`): threads pinned to each CPU, round trips between two; it
//! exits 1 unless there were two CPUs and each ran its threads.
//! `bulkhead-agent netbench HOST:PORT MIB` is the guest side of `cargo xtask bench --network`
//! ([`bulkhead_agent::netbench`]), `bulkhead-agent blockbench DEVICE MIB COUNT` that of `cargo
//! xtask bench --storage` ([`bulkhead_agent::blockbench`]). `bulkhead-agent bulk-test SPEC` is the AppVM's side of
//! `cargo xtask test appvm-bulk` ([`bulkhead_agent::bulktest`]). `bulkhead-agent block-hostile
//! CHANNEL` asks the storage qube for what is not this qube's on one of its block channels
//! and checks that each request is refused (`cargo xtask test appvm-block-hostile`,
//! [`bulkhead_agent::blockdev::hostile`]). `bulkhead-agent dispvm
//! COMMAND...`, or the binary under the name `dispvm` (a link in the initramfs), runs a
//! command in a disposable ([`bulkhead_agent::dispvm`]). Under one of the qrexec commands'
//! names (`qvm-run`, `qvm-copy`, ... `bulkhead_agent::commands::NAMES`, links in the
//! initramfs), or `bulkhead-agent qvm-run ...`, it is that command ([`bulkhead_agent::commands`]).

use bulkhead_agent::{
    agent, blockbench, blockdev, bulktest, commands, config, cpuprobe, dispvm, log, netbench,
    xstate,
};
use std::process::ExitCode;

fn main() -> ExitCode {
    let argv0 = std::env::args().next().unwrap_or_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let settings = config::Settings::parse(&cmdline);
    // Called as `dispvm` (the initramfs's link to the agent).
    let called = std::path::Path::new(&argv0).file_name();
    let called = called.and_then(|n| n.to_str()).unwrap_or_default();
    if called == "dispvm" {
        return ExitCode::from(dispvm::main(&args, &settings));
    }
    if let Some(status) = commands::main(called, &args, &settings) {
        return ExitCode::from(status);
    }
    match args.first().map(String::as_str) {
        None => {}
        Some("xstate-probe") => {
            return match xstate::main(&args[1..], settings.qube()) {
                Ok(s) if s.mismatches == 0 => ExitCode::SUCCESS,
                Ok(_) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            };
        }
        Some("cpu-probe") => return ExitCode::from(cpuprobe::main(&args[1..])),
        Some("netbench") => return ExitCode::from(netbench::main(&args[1..])),
        Some("blockbench") => return ExitCode::from(blockbench::main(&args[1..])),
        Some("bulk-test") => return ExitCode::from(bulktest::main(&args[1..], settings.qube())),
        Some("block-hostile") => return ExitCode::from(blockdev::hostile::main(&args[1..])),
        Some("dispvm") => return ExitCode::from(dispvm::main(&args[1..], &settings)),
        Some(name) if commands::NAMES.contains(&name) => {
            let status = commands::main(name, &args[1..], &settings);
            return ExitCode::from(status.unwrap_or(commands::EXIT_USAGE));
        }
        Some(other) => {
            eprintln!(
                "unknown subcommand {:?}; usage: bulkhead-agent [xstate-probe SECONDS | cpu-probe | netbench HOST:PORT MIB | blockbench DEVICE MIB COUNT | bulk-test SPEC | block-hostile CHANNEL | dispvm COMMAND... | qvm-run ... (and the other qvm-* commands)]",
                log::printable(other, 40)
            );
            return ExitCode::from(2);
        }
    }
    log::line(&format!("bulkhead-agent {}", env!("CARGO_PKG_VERSION")));
    match agent::run(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::line(&format!("stopped: {e}"));
            ExitCode::FAILURE
        }
    }
}
