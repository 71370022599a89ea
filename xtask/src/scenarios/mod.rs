//! `cargo xtask test`: the host tests, then the QEMU scenarios, then one summary.
//!
//! A scenario boots a real system in QEMU (or feeds xtask a broken input) and judges the
//! result by the console lines and the exit status only. Each has its own timeout; none
//! asserts a wall-clock time. Figures a scenario sees (VM exits to all-ready) are printed.

mod appvm;
mod appvm_block_hostile;
mod appvm_bulk;
mod appvm_dispvm;
mod appvm_gui;
mod appvm_home;
mod appvm_home_crash;
mod appvm_qrexec;
mod appvm_smp;
mod appvm_template;
mod appvms;
mod bochs;
mod bochs_linux;
pub mod boots;
mod bulk;
mod channels;
mod console_flood;
mod containment;
mod dma;
mod fuzz;
mod gui;
pub use gui::placement;
mod gui_restart;
mod hooks;
mod host;
mod hostnet;
pub(super) mod ioports;
mod isolation;
mod loom;
mod net_irq;
mod network;
mod qrexec;
mod qrexec_ask;
mod qrexec_bench;
mod qrexec_host;
mod refusals;
mod screen;
pub(crate) mod smp;
mod storage;
mod storage_crash;
mod template_tamper;
mod uefi;
mod xstate;

use anyhow::{Result, bail};
pub use channels::qemu_bench;
use std::time::Instant;

/// One scenario: a name and a check that fails with the reason.
pub struct Scenario {
    /// Short name, shown in the summary.
    pub name: &'static str,
    /// What it shows, one line.
    pub about: &'static str,
    /// Runs it; `Ok` with a short note (figures) when it passed.
    pub run: fn() -> Result<String>,
}

/// Every scenario, cheapest first.
pub fn all() -> Vec<Scenario> {
    vec![
        refusals::BROKEN_DESCRIPTIONS,
        hooks::NOT_SHIPPED,
        boots::DEFAULT_MAX,
        boots::DEFAULT_EPYC,
        screen::QMP_SCREEN,
        containment::CONTAINMENT,
        smp::SMP_BOOT,
        smp::SMP_CHANNELS,
        smp::SMP_CONTAINMENT,
        ioports::IO_PORTS,
        isolation::STATE_ISOLATION,
        console_flood::CONSOLE_FLOOD,
        channels::CHANNELS,
        qrexec::QREXEC_UNIKERNELS,
        qrexec_host::QREXEC_HOST,
        bulk::BULK,
        gui::GUI,
        gui_restart::GUI_RESTART,
        storage::STORAGE,
        storage_crash::STORAGE_CRASH,
        qrexec_ask::QREXEC_ASK,
        network::NETWORK,
        network::NETWORK_E1000E,
        network::NETWORK_RESTART,
        network::NETWORK_FLOOD,
        net_irq::NETWORK_INTERRUPTS,
        dma::DMA_ESCAPE,
        loom::LOOM_RING,
        loom::LOOM_WAKE,
        fuzz::FUZZ_RING,
        fuzz::FUZZ_BULK,
        fuzz::FUZZ_GUI,
        fuzz::FUZZ_FIREWALL,
        fuzz::FUZZ_SYSDESC,
        fuzz::FUZZ_FILECOPY,
        fuzz::FUZZ_QREXEC_AGENT,
        fuzz::FUZZ_QREXEC_RELAY,
        fuzz::FUZZ_BLOCK,
        fuzz::FUZZ_DISK,
        refusals::BROKEN_BUNDLES,
        boots::GRUB_ISO,
        uefi::UEFI_ISO,
        uefi::UEFI_USB,
        uefi::UEFI_FRAMEBUFFER,
        appvm::APPVM_TEMPLATE,
        appvms::APPVM_NETWORK,
        appvms::APPVM_CRASH,
        appvms::DISPOSABLES,
        smp::SMP_DISPOSABLES,
        smp::SMP_DESKTOP,
        smp::SMP_NETWORK,
        appvm_smp::APPVM_SMP,
        appvm_bulk::APPVM_BULK,
        appvm_dispvm::APPVM_DISPVM,
        appvm_gui::APPVM_GUI,
        appvm_home::APPVM_HOME,
        appvm_home_crash::APPVM_HOME_CRASH,
        appvm_block_hostile::APPVM_BLOCK_HOSTILE,
        template_tamper::TEMPLATE_TAMPER,
        appvm_qrexec::APPVM_QREXEC,
        xstate::APPVM_XSTATE,
        bochs::SVM_RYZEN,
        bochs::VMX_NO_EPT,
        bochs::VMX,
        bochs::VMX_NEHALEM,
        bochs::VMX_CHANNELS,
        bochs::VMX_SMP,
        bochs::VMX_CONTAINMENT,
        isolation::BOCHS_STATE_ISOLATION,
        bochs_linux::VMX_APPVM,
    ]
}

/// Runs the host tests and the scenarios whose names contain `filter`; prints a summary
/// ending in the line `N passed, N failed`.
pub fn run(filter: Option<&str>, skip_host: bool) -> Result<()> {
    let started = Instant::now();
    let mut passed = 0usize;
    let mut skipped = 0usize;
    let mut failed = Vec::new();
    if !skip_host {
        println!("== host tests (cargo test)");
        let counts = host::run()?;
        passed += counts.passed;
        if counts.failed > 0 || !counts.ok {
            failed.push(format!("host tests: {} failed", counts.failed));
        }
        println!(
            "   {} passed, {} failed, {} ignored",
            counts.passed, counts.failed, counts.ignored
        );
    }
    let chosen: Vec<Scenario> = all()
        .into_iter()
        .filter(|s| filter.is_none_or(|f| s.name.contains(f)))
        .collect();
    if chosen.is_empty() && filter.is_some() {
        bail!("no scenario matches {:?}", filter.unwrap_or_default());
    }
    for s in &chosen {
        println!("== scenario {}: {}", s.name, s.about);
        let t = Instant::now();
        match (s.run)() {
            // A scenario that cannot run here (a tool that cannot be installed) says
            // "skipped: why"; it counts as neither passed nor failed.
            Ok(note) if note.starts_with("skipped") => {
                skipped += 1;
                println!("   SKIPPED ({:.1} s) {note}", t.elapsed().as_secs_f64());
            }
            Ok(note) => {
                passed += 1;
                println!("   ok ({:.1} s) {note}", t.elapsed().as_secs_f64());
            }
            Err(e) => {
                println!("   FAILED ({:.1} s): {e:#}", t.elapsed().as_secs_f64());
                show_logs_since(std::time::SystemTime::now() - t.elapsed());
                failed.push(format!("{}: {e:#}", s.name));
            }
        }
    }
    println!("== summary ({:.0} s)", started.elapsed().as_secs_f64());
    for f in &failed {
        println!("   FAILED {f}");
    }
    if skipped > 0 {
        println!(
            "{passed} passed, {} failed, {skipped} skipped",
            failed.len()
        );
    } else {
        println!("{passed} passed, {} failed", failed.len());
    }
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("{} failed", failed.len())
    }
}

/// Prints the end of every console log a failed scenario wrote, so CI output shows it.
fn show_logs_since(since: std::time::SystemTime) {
    let dir = crate::bundle::out_dir().join("logs");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        let fresh = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|m| m >= since);
        if !fresh {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        println!("   --- last lines of {}", e.path().display());
        for l in &lines[lines.len().saturating_sub(30)..] {
            println!("   | {l}");
        }
    }
}

/// Fails with `what` unless `cond`.
fn expect(cond: bool, what: impl FnOnce() -> String) -> Result<()> {
    if cond { Ok(()) } else { bail!("{}", what()) }
}
