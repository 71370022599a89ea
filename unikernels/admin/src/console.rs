//! The host's console: `cargo xtask qvm` on the host talks qrexec to the admin qube over
//! COM2, when the admin qube owns its ports (`io_ports = ["0x2f8-0x2ff"]`). The framing and
//! the session are `bulkhead_abi::qrexec::host_console`'s; the host is the relay's [`HOST`],
//! a caller without policy, like Qubes' dom0.
//!
//! Each pass reads what the UART received, and hands each whole frame to the relay (a
//! frame the relay cannot take yet is held and offered first next pass, and the UART is
//! read no further meanwhile). What the relay sends the host is written at once, with a
//! bound on the wait: a host that stops reading loses messages, the admin qube never
//! stalls for it.

use crate::links::Links;
use crate::uart::{Absent, Uart};
use alloc::vec::Vec;
use bulkhead_abi::qrexec::host_console::{COM2, Deframer, FRAME_MAX};
use bulkhead_abi::qrexec::{FromAdmin, QREXEC_VERSION, ToAdmin};
use bulkhead_relay::{HOST, Outcome, Relay};
use bulkhead_rt::{Boot, hypercall, info, warn};

/// Frames taken from the host per pass.
const BUDGET: usize = 32;
/// Bytes read from the UART per pass at most.
const READ_BUDGET: usize = 4096;
/// Line status reads, once bytes flow, before a pass takes the UART's receive FIFO as
/// drained: QEMU refills it from the host's socket (14 bytes at a time) only once the FIFO
/// is empty, when its main loop next runs. Waiting for that is four times the throughput
/// of the next pass; when nothing flows, one read is enough.
const FLOWING_SPINS: u32 = 2000;
/// How long one frame to the host may wait for the transmitter, in ns.
const SEND_TIMEOUT_NS: u64 = 50_000_000;
/// How long after the host's last frame the loop keeps polling fast, in ns (so the call
/// that follows a hello is read soon).
const AWAKE_AFTER_NS: u64 = 2_000_000_000;

/// The UART, what it received so far, and what waits for the relay.
pub struct HostConsole {
    uart: Uart,
    deframer: Deframer,
    /// A frame the relay could not take yet (a ring it goes to was full).
    held: Option<Vec<u8>>,
    /// The transmitter timed out: messages are dropped until it has room again.
    stalled: bool,
    /// Messages to the host dropped (transmitter stuck, or too large).
    dropped: u64,
    /// When the host last sent a frame (ns).
    heard_at: u64,
    /// Bytes arrived in this pass.
    flowing: bool,
    /// Where messages to the host are encoded.
    out: [u8; FRAME_MAX + 1],
}

impl HostConsole {
    /// The console, when the admin qube owns COM2 and a UART is there.
    pub fn open(boot: &Boot) -> Option<HostConsole> {
        match Uart::open(boot, COM2) {
            Ok(uart) => {
                info!("admin: host console on COM2 (`cargo xtask qvm`)");
                Some(HostConsole {
                    uart,
                    deframer: Deframer::new(),
                    held: None,
                    stalled: false,
                    dropped: 0,
                    heard_at: 0,
                    flowing: false,
                    out: [0; FRAME_MAX + 1],
                })
            }
            Err(Absent::NotOwned) => None,
            Err(Absent::NoDevice) => {
                info!("admin: COM2 is this qube's but no UART answers there: no host console");
                None
            }
        }
    }

    /// Sends `msg` to the host, or drops it when the host does not read.
    pub fn send(&mut self, msg: &FromAdmin<'_>) {
        if self.stalled {
            // A 0x00 first ends the frame that was cut off: the host drops that one alone.
            if !self.uart.can_send() || !self.uart.write(&[0], SEND_TIMEOUT_NS) {
                self.dropped += 1;
                return;
            }
            self.stalled = false;
            info!(
                "admin: the host console drains again ({} messages dropped)",
                self.dropped
            );
        }
        let Ok(frame) = postcard::to_slice_cobs(msg, &mut self.out) else {
            self.dropped += 1;
            return;
        };
        if !self.uart.write(frame, SEND_TIMEOUT_NS) {
            warn!("admin: the host console does not drain; messages to it are dropped");
            self.stalled = true;
            self.dropped += 1;
        }
    }

    /// Whether the loop should poll fast: the host has calls open or spoke lately.
    pub fn awake(&self, relay: &Relay<'_>, now_ns: u64) -> bool {
        relay.calls_from(HOST) > 0 || now_ns.saturating_sub(self.heard_at) < AWAKE_AFTER_NS
    }

    /// The next whole frame the UART received, if any.
    fn next_frame(&mut self) -> Option<Vec<u8>> {
        for _ in 0..READ_BUDGET {
            let spins = if self.flowing { FLOWING_SPINS } else { 1 };
            let byte = self.uart.read_byte(spins)?;
            self.flowing = true;
            if let Some(frame) = self.deframer.push(byte) {
                self.heard_at = hypercall::time_ns();
                return Some(frame.to_vec());
            }
        }
        None
    }
}

/// Hands the host's frames to the relay: first the one held, then up to [`BUDGET`] more.
pub fn serve(links: &mut Links, relay: &mut Relay<'_>) {
    if let Some(console) = links.console.as_mut() {
        console.flowing = false;
    }
    for _ in 0..BUDGET {
        let Some(console) = links.console.as_mut() else {
            return;
        };
        let Some(frame) = console.held.take().or_else(|| console.next_frame()) else {
            return;
        };
        if offer(links, relay, &frame) == Outcome::Retry {
            if let Some(console) = links.console.as_mut() {
                console.held = Some(frame);
            }
            return;
        }
    }
}

/// Decodes one frame from the host and acts on it.
fn offer(links: &mut Links, relay: &mut Relay<'_>, frame: &[u8]) -> Outcome {
    // `from_bytes_cobs` decodes in place: the frame itself stays whole, should it be held.
    let mut bytes = frame.to_vec();
    match postcard::from_bytes_cobs::<ToAdmin<'_>>(&mut bytes) {
        Ok(ToAdmin::Hello { version }) => {
            hello(links, relay, version);
            Outcome::Done
        }
        Ok(msg) => relay.on_message(links, HOST, &msg),
        Err(_) => {
            // A client that left mid-message leaves half a frame, ended by the next
            // client's first 0x00: usually that, rather than anything hostile.
            info!("admin: a frame from the host console that does not decode; dropped");
            relay.dropped += 1;
            Outcome::Done
        }
    }
}

/// A host client starts: the calls an earlier one left open end, and it hears our version.
fn hello(links: &mut Links, relay: &mut Relay<'_>, version: u16) {
    let open = relay.calls_from(HOST);
    relay.reset(links, HOST);
    if open > 0 {
        info!("admin: a new host client; the {open} calls the last one left open ended");
    }
    if version != QREXEC_VERSION {
        warn!("admin: the host speaks qrexec version {version}, this admin qube {QREXEC_VERSION}");
    }
    if let Some(console) = links.console.as_mut() {
        console.send(&FromAdmin::Hello {
            version: QREXEC_VERSION,
        });
    }
}
