//! The `testing` unikernel: misbehaves on command, so the hypervisor's containment tests can
//! check that a qube's fault stops that qube and nothing else. Never part of a real system.
//!
//! The argument `mode=MODE` chooses what it does after it logs `testing: mode MODE` and says
//! it is ready; see [`Mode`]. A mode that should get the qube stopped and does not ends with
//! the log line `testing: still running after MODE` and exit status [`EXIT_SURVIVED`].
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use core::time::Duration;

use bulkhead_freestanding as _;
use bulkhead_rt::report::{Size, heap_check};
use bulkhead_rt::{Args, Boot, error, info};

#[allow(
    unsafe_code,
    reason = "misbehaving at the CPU level is what this image is for"
)]
mod misbehave;

mod block;
mod block_hostile;
mod block_journal;
mod bulk;
mod canary;
mod channels;
mod console_flood;
mod cpustate;
mod disposable;
mod gui_client;
mod ioports;
mod netclient;
mod netflood;
mod qrexec;
mod qrexec_bench;
mod qrexec_hostile;

bulkhead_rt::entry!(main);

/// Exit status for a missing or unknown mode.
const EXIT_BAD_MODE: i32 = 2;
/// Exit status when a misbehaviour did not get the qube stopped (far from the small statuses
/// tests pass to `exit=N`).
const EXIT_SURVIVED: i32 = 99;
/// Default heartbeat period.
const DEFAULT_PERIOD_MS: u64 = 50;

/// What the qube does (`mode=` argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `idle`: waits for events forever, logging each.
    Idle,
    /// `heartbeat`: logs `heartbeat N` every `period_ms=` (default 50) milliseconds.
    Heartbeat { period_ms: u64 },
    /// `console-flood` and `heartbeat-gap`: the console-flood test (`console_flood.rs`).
    ConsoleFlood,
    /// See `ConsoleFlood`.
    HeartbeatGap,
    /// `kernel-gs-probe period_ms=N`: every N ms, reads memory through SWAPGS (the GS base
    /// becomes IA32_KERNEL_GS_BASE) and checks the hypervisor left that MSR 0, not a Linux
    /// kernel's per-CPU pointer; exits 1 if not.
    KernelGsProbe { period_ms: u64 },
    /// `triple-fault`: empty IDT, then `int3`.
    TripleFault,
    /// `stack-overflow`: unbounded recursion into the guard page below the stack.
    StackOverflow,
    /// `spin`: `cli` and a loop without hypercalls.
    Spin,
    /// `bad-hypercall`: hypercall number 0xdead.
    BadHypercall,
    /// `bad-pointer`: ConsoleWrite of 16 bytes at mem_size + 0x1000.
    BadPointer,
    /// `huge-write`: ConsoleWrite of MAX_CONSOLE_WRITE + 1 bytes.
    HugeWrite,
    /// `foreign-memory`: maps guest-physical 3 GiB into its page tables, reads and writes it.
    ForeignMemory,
    /// `io-port`: `out 0x80, al`.
    IoPort,
    /// `io-ports port=0x64 trap=0x61`: reads a port it owns (no VM exit), then a port it
    /// does not own (stopped); see `ioports.rs`.
    IoPorts,
    /// `msr`: `rdmsr` of EFER.
    Msr,
    /// `vmrun`: the SVM `VMRUN` instruction (a qube may not run guests of its own).
    Vmrun,
    /// `cr4`: sets CR4.PKE (a unikernel may not change CR4).
    Cr4,
    /// `wbinvd`: WBINVD.
    Wbinvd,
    /// `rdpmc`: RDPMC of counter 0.
    Rdpmc,
    /// `invlpga`: the AMD INVLPGA with rax = 0, ecx = 0.
    Invlpga,
    /// `cpu-state marker=HEX seconds=S [restarts=N]`: the registers it writes stay its own
    /// and it inherits none (`cpustate/`).
    CpuState,
    /// `start-disposable channel=NAME runs=N`: starts the disposable behind NAME N times in a
    /// row, each after the last stopped (`disposable.rs`).
    StartDisposable,
    /// `ping channel=NAME count=N wait=poll|spin|event`: ping-pong over a channel and measure.
    Ping,
    /// `pong channel=NAME wait=poll|spin|event`: echo pings; survive a broken channel.
    Pong,
    /// `hostile channel=NAME rounds=N`: scribble wrong indices and random bytes into its side.
    Hostile,
    /// `snoop`: map and read a channel window that is not its own.
    Snoop,
    /// `bulk-probe channel=NAME [write-peer=1]`: markers through a channel's bulk area, and
    /// optionally a write to the peer's (read-only) pool that must get it stopped.
    BulkProbe,
    /// `stream-tx` / `stream-rx channel=NAME`: bytes through the embedded-io view of a channel.
    StreamTx,
    /// See `StreamTx`.
    StreamRx,
    /// `bulk-tx channel=NAME bytes=N chunk=N [attack=rewrite|outside]`: lends a
    /// transfer through the channel's bulk area (`bulk.rs`).
    BulkTx,
    /// `bulk-rx channel=NAME [attack=hoard]`: receives and checks it.
    BulkRx,
    /// `gui-client`, `gui-hostile`: a window through the gui qube (`gui_client`).
    GuiClient,
    /// Serves `test.Echo` over its qrexec channel (`qrexec`).
    QrexecServer,
    /// Makes allowed, denied and malformed calls through the admin qube (`qrexec`).
    QrexecClient,
    /// `null-calls count=N`: N `abi_version` hypercalls, timed (the cost of one exit).
    NullCalls,
    /// `panic`: panics on purpose.
    Panic,
    /// `exit=N` (or `exit` with `status=N`): exits with status N.
    Exit(i32),
    /// `alloc-storm`: allocates until allocation fails, reports how much it got, exits 0.
    AllocStorm,
    /// `canary kib=N seconds=S`: the DMA tests' victim (see `canary.rs`).
    Canary { kib: usize, seconds: u64 },
    /// `net-client`: DNS, TCP echo, a denied destination and a spoofed source through the
    /// firewall (see `netclient.rs`).
    NetClient,
    /// `net-client-isolated`: DNS works, the other client is unreachable (`netclient.rs`).
    NetClientIsolated,
    /// `net-uplink restarts=N`: waits for sys-net's uplink; restarts itself N times.
    NetUplink,
    /// `net-echo-loop`: TCP echo rounds for a while, across a sys-net restart (`netclient.rs`).
    NetEchoLoop,
    /// `net-flood`: new flows nobody answers, to fill sys-firewall's table (`netflood.rs`).
    NetFlood,
    /// `disposable-client channel=NAME template=T runs=N`: N disposables in a row
    /// (`disposable.rs`).
    DisposableClient,
    /// `block-client`: its private volume across reboots: finds the last boot's record and
    /// pattern intact, writes the next (`block.rs`).
    BlockClient,
    /// `block-hostile [flood=N]`: asks the storage qube for what is not its own; every
    /// answer must be the right error (`block_hostile.rs`).
    BlockHostile,
    /// `block-journal`: checks the journal earlier boots left on its volume, then appends
    /// records, each written and flushed, until it is stopped (`block_journal.rs`).
    BlockJournal,
}

fn parse_mode(args: &Args<'_>) -> Result<Mode, &'static str> {
    let mode = args.get("mode").ok_or("no mode= in the arguments")?;
    let status = |text: Option<&str>| match text {
        None => Ok(0),
        Some(t) => t.parse::<i32>().map_err(|_| "exit status is not a number"),
    };
    Ok(match mode {
        "idle" => Mode::Idle,
        "heartbeat" => Mode::Heartbeat {
            period_ms: match args.parse::<u64>("period_ms") {
                None => DEFAULT_PERIOD_MS,
                Some(Ok(ms)) => ms,
                Some(Err(_)) => return Err("period_ms is not a number"),
            },
        },
        "kernel-gs-probe" => Mode::KernelGsProbe {
            period_ms: match args.parse::<u64>("period_ms") {
                None => DEFAULT_PERIOD_MS,
                Some(Ok(ms)) => ms,
                Some(Err(_)) => return Err("period_ms is not a number"),
            },
        },
        "console-flood" => Mode::ConsoleFlood,
        "heartbeat-gap" => Mode::HeartbeatGap,
        "triple-fault" => Mode::TripleFault,
        "stack-overflow" => Mode::StackOverflow,
        "spin" => Mode::Spin,
        "bad-hypercall" => Mode::BadHypercall,
        "bad-pointer" => Mode::BadPointer,
        "huge-write" => Mode::HugeWrite,
        "foreign-memory" => Mode::ForeignMemory,
        "io-port" => Mode::IoPort,
        "io-ports" => Mode::IoPorts,
        "msr" => Mode::Msr,
        "vmrun" => Mode::Vmrun,
        "cr4" => Mode::Cr4,
        "wbinvd" => Mode::Wbinvd,
        "rdpmc" => Mode::Rdpmc,
        "invlpga" => Mode::Invlpga,
        "cpu-state" => Mode::CpuState,
        "start-disposable" => Mode::StartDisposable,
        "ping" => Mode::Ping,
        "pong" => Mode::Pong,
        "hostile" => Mode::Hostile,
        "snoop" => Mode::Snoop,
        "bulk-probe" => Mode::BulkProbe,
        "null-calls" => Mode::NullCalls,
        "stream-tx" => Mode::StreamTx,
        "bulk-tx" => Mode::BulkTx,
        "bulk-rx" => Mode::BulkRx,
        "gui-client" | "gui-hostile" => Mode::GuiClient,
        "qrexec-server" => Mode::QrexecServer,
        "qrexec-client" => Mode::QrexecClient,
        "stream-rx" => Mode::StreamRx,
        "panic" => Mode::Panic,
        "alloc-storm" => Mode::AllocStorm,
        "net-client" => Mode::NetClient,
        "net-client-isolated" => Mode::NetClientIsolated,
        "net-uplink" => Mode::NetUplink,
        "net-echo-loop" => Mode::NetEchoLoop,
        "net-flood" => Mode::NetFlood,
        "disposable-client" => Mode::DisposableClient,
        "block-client" => Mode::BlockClient,
        "block-hostile" => Mode::BlockHostile,
        "block-journal" => Mode::BlockJournal,
        "canary" => Mode::Canary {
            kib: args.get("kib").and_then(|k| k.parse().ok()).unwrap_or(1024),
            seconds: args
                .get("seconds")
                .and_then(|k| k.parse().ok())
                .unwrap_or(10),
        },
        "exit" => Mode::Exit(status(args.get("status"))?),
        other => match other.strip_prefix("exit=") {
            Some(n) => Mode::Exit(status(Some(n))?),
            None => return Err("unknown mode"),
        },
    })
}

fn main(boot: &Boot) -> i32 {
    let args = boot.args();
    let mode = match parse_mode(&args) {
        Ok(mode) => mode,
        Err(why) => {
            error!("testing: {why} (args \"{}\")", args.as_str());
            info!(
                "testing: modes: idle heartbeat heartbeat-gap console-flood triple-fault stack-overflow spin \
                 bad-hypercall bad-pointer \
                 huge-write foreign-memory io-port io-ports msr vmrun panic exit=N alloc-storm ping pong \
                 hostile snoop canary net-client net-client-isolated net-uplink net-echo-loop \
                 net-flood disposable-client \
                 kernel-gs-probe cr4 wbinvd rdpmc invlpga cpu-state start-disposable bulk-probe \
                 stream-tx stream-rx bulk-tx bulk-rx gui-client gui-hostile qrexec-server \
                 qrexec-client block-client block-hostile block-journal"
            );
            return EXIT_BAD_MODE;
        }
    };
    let name = args.get("mode").unwrap_or("?");
    info!("testing: mode {name}");
    bulkhead_rt::ready();
    match mode {
        Mode::Idle => idle(),
        Mode::Heartbeat { period_ms } => heartbeat(period_ms),
        Mode::ConsoleFlood => return console_flood::flood(&args),
        Mode::HeartbeatGap => return console_flood::heartbeat_gap(&args),
        Mode::KernelGsProbe { period_ms } => return kernel_gs_probe(period_ms),
        Mode::Exit(status) => {
            info!("testing: exiting with status {status}");
            return status;
        }
        Mode::AllocStorm => return alloc_storm(boot),
        Mode::Canary { kib, seconds } => return canary::run(kib, seconds),
        Mode::NetClient => return netclient::client(boot, &args),
        Mode::NetClientIsolated => return netclient::isolated(boot, &args),
        Mode::NetUplink => return netclient::uplink(boot, &args),
        Mode::NetEchoLoop => return netclient::echo_loop(boot, &args),
        Mode::NetFlood => return netflood::flood(boot, &args),
        Mode::DisposableClient => return disposable::client(boot, &args),
        Mode::BlockClient => return block::client(boot, &args),
        Mode::BlockHostile => return block_hostile::hostile(boot, &args),
        Mode::BlockJournal => return block_journal::journal(boot, &args),
        Mode::StartDisposable => return disposable::start_runs(boot, &args),
        Mode::CpuState => cpustate::run(boot, &args),
        Mode::Panic => panic!("testing: panic on purpose"),
        Mode::Spin => {
            info!("testing: cli, then spinning without hypercalls");
            misbehave::spin()
        }
        Mode::TripleFault => {
            info!("testing: loading an empty IDT, then int3");
            misbehave::triple_fault();
        }
        Mode::StackOverflow => {
            info!("testing: recursing until the stack runs out");
            let depth = misbehave::overflow_stack(0);
            info!("testing: recursion returned at depth {depth}");
        }
        Mode::BadHypercall => {
            info!("testing: hypercall 0xdead");
            let rax = misbehave::bad_hypercall();
            info!("testing: hypercall 0xdead returned {rax:#x}");
        }
        Mode::BadPointer => {
            let addr = boot.mem_size() + 0x1000;
            info!("testing: console_write of 16 bytes at {addr:#x} (outside this qube)");
            misbehave::console_write_raw(addr, 16);
        }
        Mode::HugeWrite => {
            let buf = alloc::vec![b'x'; misbehave::HUGE_WRITE_LEN];
            info!("testing: console_write of {} bytes (limit + 1)", buf.len());
            misbehave::console_write_raw(buf.as_ptr().addr() as u64, buf.len() as u64);
        }
        Mode::ForeignMemory => {
            if let Err(why) = misbehave::foreign_memory(boot) {
                error!("testing: foreign-memory: {why}");
                return EXIT_BAD_MODE;
            }
        }
        Mode::IoPort => {
            info!("testing: out 0x80, al");
            misbehave::io_port();
        }
        Mode::IoPorts => return ioports::run(boot, &args),
        Mode::Msr => {
            info!("testing: rdmsr 0xc0000080 (EFER)");
            let v = misbehave::read_efer();
            info!("testing: rdmsr returned {v:#x}");
        }
        Mode::Vmrun => {
            info!("testing: vmrun");
            misbehave::vmrun();
        }
        Mode::Cr4 => {
            info!("testing: setting CR4.PKE");
            misbehave::set_cr4_pke();
        }
        Mode::Wbinvd => {
            info!("testing: wbinvd");
            misbehave::wbinvd();
        }
        Mode::Rdpmc => {
            info!("testing: rdpmc of counter 0");
            let v = misbehave::rdpmc();
            info!("testing: rdpmc returned {v:#x}");
        }
        Mode::Invlpga => {
            info!("testing: invlpga rax=0 ecx=0");
            misbehave::invlpga();
        }
        Mode::Ping => return channels::ping(boot, &args),
        Mode::Pong => return channels::pong(boot, &args),
        Mode::StreamTx => return channels::stream_tx(boot, &args),
        Mode::BulkTx => return bulk::tx(boot, &args),
        Mode::BulkRx => return bulk::rx(boot, &args),
        Mode::GuiClient => return gui_client::client(boot, &args),
        Mode::QrexecServer => return qrexec::server(boot, &args),
        Mode::QrexecClient => return qrexec::client(boot, &args),
        Mode::StreamRx => return channels::stream_rx(boot, &args),
        Mode::Hostile => {
            let rounds = args.get("rounds").and_then(|r| r.parse().ok()).unwrap_or(3);
            let local = boot
                .channels()
                .iter()
                .position(|c| Some(c.name()) == args.get("channel"));
            if let Err(why) = misbehave::scribble_channel(boot, local.unwrap_or(0), rounds) {
                error!("testing: hostile: {why}");
                return EXIT_BAD_MODE;
            }
            info!("testing: hostile: done scribbling; idling");
            idle();
        }
        Mode::NullCalls => {
            let count: u64 = args
                .get("count")
                .and_then(|c| c.parse().ok())
                .unwrap_or(1000);
            let (t0, e0) = (bulkhead_rt::now_ns(), bulkhead_rt::hypercall::exit_count());
            for _ in 0..count {
                core::hint::black_box(bulkhead_rt::abi_version());
            }
            let (exits, ns) = (
                bulkhead_rt::hypercall::exit_count() - e0,
                bulkhead_rt::now_ns() - t0,
            );
            info!(
                "null-calls: {count} hypercalls: {} ns per hypercall, {exits} exits",
                ns / count.max(1)
            );
            return 0;
        }
        Mode::BulkProbe => {
            let channel = args.get("channel").unwrap_or("");
            let write_peer = args.has("write-peer");
            if let Err(why) = misbehave::bulk_probe(boot, channel, write_peer) {
                error!("testing: bulk-probe: {why}");
                return EXIT_BAD_MODE;
            }
            if !write_peer {
                info!("testing: bulk-probe done");
                return 0;
            }
        }
        Mode::Snoop => {
            if let Err(why) = misbehave::snoop_window(boot) {
                error!("testing: snoop: {why}");
                return EXIT_BAD_MODE;
            }
        }
    }
    error!("testing: still running after {name}: the hypervisor did not stop this qube");
    EXIT_SURVIVED
}

fn idle() -> ! {
    loop {
        let events = bulkhead_rt::wait_event(None);
        info!("events {events}");
    }
}

fn heartbeat(period_ms: u64) -> ! {
    let mut n: u64 = 0;
    loop {
        bulkhead_rt::sleep(Duration::from_millis(period_ms));
        n += 1;
        info!("heartbeat {n}");
    }
}

/// Reads through SWAPGS every `period_ms` (see [`misbehave::read_through_kernel_gs`]);
/// returns 1 as soon as a read does not see this qube's own probe value.
fn kernel_gs_probe(period_ms: u64) -> i32 {
    let probe = alloc::boxed::Box::new(0x6b65_726e_656c_6773u64);
    let mut n: u64 = 0;
    loop {
        bulkhead_rt::sleep(Duration::from_millis(period_ms));
        n += 1;
        let seen = misbehave::read_through_kernel_gs(&probe);
        if seen != *probe {
            error!("kernel-gs probe {n}: read {seen:#x} through KERNEL_GS_BASE, not the probe");
            return 1;
        }
        info!("kernel-gs probe {n}: KERNEL_GS_BASE is 0");
    }
}

/// Allocates chunks (1 MiB, halving down to 64 bytes when one does not fit) until nothing
/// fits, reports the total, frees everything and checks the heap works again.
fn alloc_storm(boot: &Boot) -> i32 {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut total: u64 = 0;
    let mut size: usize = 1 << 20;
    while size >= 64 {
        if chunks.try_reserve(1).is_err() {
            break;
        }
        let mut chunk = Vec::new();
        if chunk.try_reserve_exact(size).is_ok() {
            total += size as u64;
            chunks.push(chunk);
        } else {
            size /= 2;
        }
    }
    info!(
        "testing: alloc-storm got {} ({total} bytes) in {} chunks before allocation failed; \
         heap region is {} ({} bytes)",
        Size(total),
        chunks.len(),
        Size(boot.heap_size()),
        boot.heap_size()
    );
    drop(chunks);
    match heap_check(1000) {
        Some(_) => {
            info!("testing: alloc-storm freed everything; heap check ok");
            0
        }
        None => {
            error!("testing: alloc-storm: heap check failed after freeing");
            1
        }
    }
}
