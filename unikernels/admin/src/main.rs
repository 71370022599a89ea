//! The admin qube (Qubes' `@adminvm`): every service call between qubes goes through it.
//!
//! It reads its configuration blob (the qubes, their tags and qrexec channels, the compiled
//! policy), opens each qube's `<qube>.qrexec` channel (`links`), and loops: take each
//! channel's messages (a bounded number per pass) and hand them to the relay
//! (`bulkhead-relay`: the policy, the prompts, the relay of each call between its two ends
//! only, the `admin.vm.*` services), let the relay's clock run, sleep until a channel event
//! or the next tick. A message the relay cannot pass on yet (a full ring) is held, and its
//! channel read no further until it goes: the admin qube's memory does not grow with what
//! qubes send. When it owns COM2, the host's console (`console`) is read the same way each
//! pass, as the relay's `HOST`; the loop then wakes every [`FAST_TICK`] while the host has
//! calls open, since the UART raises no event.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod console;
mod links;
mod uart;

use bulkhead_abi::qrexec::ToAdmin;
use bulkhead_freestanding as _;
use bulkhead_qubeconfig::QubeConfig;
use bulkhead_relay::{Outcome, Relay};
use bulkhead_rt::{Boot, error, events, hypercall, info, warn};
use core::time::Duration;
use links::{Links, Read};

bulkhead_rt::entry!(main);

/// The configuration blob is unreadable, or names no admin configuration.
const BAD_CONFIG: i32 = 5;
/// Messages taken from one channel per pass: a flooding qube cannot hold the others up.
const BUDGET: usize = 32;
/// How often the loop wakes without an event (timeouts, held messages, shutdown deadlines).
const TICK: Duration = Duration::from_millis(100);
/// How often it wakes while the host's console is busy (the UART is polled).
const FAST_TICK: Duration = Duration::from_millis(5);

fn main(boot: &Boot) -> i32 {
    let config = match QubeConfig::decode(boot.config()) {
        Ok(QubeConfig {
            admin: Some(admin), ..
        }) => admin,
        Ok(_) => {
            error!("admin: the configuration blob has no admin part");
            return BAD_CONFIG;
        }
        Err(e) => {
            error!("admin: configuration blob: {e}");
            return BAD_CONFIG;
        }
    };
    let mut links = Links::open(boot, &config);
    let mut relay = Relay::new(&config);
    info!(
        "admin: {} policy entries, {} qubes with qrexec, ask {}",
        config.policy.entries.len(),
        links.links.len(),
        match config.gui {
            Some(g) => relay.name(g),
            None => "is deny (no gui qube)",
        }
    );
    hypercall::ready();
    hypercall::defer_notifies(true);
    let (e0, mut reported) = (hypercall::exit_count(), 0);
    loop {
        // Disposables whose calls ended last pass: their callers have seen the end.
        relay.destroy_done(&mut links);
        for i in 0..links.links.len() {
            serve(&mut links, &mut relay, i);
        }
        console::serve(&mut links, &mut relay);
        relay.tick(&mut links);
        // Figures (`cargo xtask bench --qemu`): this qube's exits per call, every 100 calls.
        if relay.ended / 100 > reported {
            reported = relay.ended / 100;
            let exits = hypercall::exit_count() - e0;
            info!(
                "admin: {} calls ended, {}.{:02} exits of this qube per call, {} messages dropped",
                relay.ended,
                exits / relay.ended,
                exits * 100 / relay.ended % 100,
                relay.dropped
            );
        }
        hypercall::flush_notifies();
        let tick = match &links.console {
            Some(c) if c.awake(&relay, hypercall::time_ns()) => FAST_TICK,
            _ => TICK,
        };
        if !links.prepare_wait() {
            let _ = events::wait_event(Some(tick));
        }
        links.finish_wait();
    }
}

/// Hands link `i`'s messages to the relay: first the one it held, then up to [`BUDGET`].
fn serve(links: &mut Links, relay: &mut Relay<'_>, i: usize) {
    let q = links.links[i].qube;
    if let Some(bytes) = links.links[i].held.take() {
        if offer(links, relay, q, &bytes) == Outcome::Retry {
            links.links[i].held = Some(bytes);
            return;
        }
    }
    for _ in 0..BUDGET {
        match links.read(i) {
            Read::Empty => return,
            Read::Reset => {
                info!("admin: {}'s channel reset", relay.name(q));
                relay.reset(links, q);
            }
            Read::Message(bytes) => {
                if offer(links, relay, q, &bytes) == Outcome::Retry {
                    links.links[i].held = Some(bytes);
                    return;
                }
            }
        }
    }
}

/// Decodes one message from qube `q` and gives it to the relay.
fn offer(links: &mut Links, relay: &mut Relay<'_>, q: u8, bytes: &[u8]) -> Outcome {
    match postcard::from_bytes::<ToAdmin<'_>>(bytes) {
        Ok(msg) => relay.on_message(links, q, &msg),
        Err(_) => {
            warn!(
                "admin: {} sent a message that does not decode; dropped",
                relay.name(q)
            );
            relay.dropped += 1;
            Outcome::Done
        }
    }
}
