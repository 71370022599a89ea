//! For tests and the fuzz target (feature `testkit`, never in the admin qube's image): a
//! simulated world for the relay (each qube's ring as a queue of encoded messages, qube
//! states the admin hypercalls change, a clock, a log; the system compiled from a real
//! system description by `bulkhead-sysdesc`), and [`script`], hostile qubes scripted.
#![allow(missing_docs, reason = "test kit")]

pub mod script;

use crate::{Full, HOST, Host, Relay};
use bulkhead_abi::hypercall::QubeState;
use bulkhead_abi::qrexec::{FromAdmin, ToAdmin};
use bulkhead_qubeconfig::AdminConfig;
use std::collections::{BTreeMap, VecDeque};
use std::string::String;
use std::vec::Vec;

/// The test system: the admin qube, a gui qube, work, personal, a disposable, and a
/// unikernel without qrexec.
pub const SYSTEM: &str = r#"
[system]
ram_mib = 2048

[[qube]]
name = "admin"
kind = "unikernel"
image = "admin"
memory_mib = 8
label = "black"
disposables = ["disp"]

[[qube]]
name = "gui"
kind = "unikernel"
image = "gui"
memory_mib = 16
label = "black"

[[qube]]
name = "work"
kind = "linux"
memory_mib = 256
label = "blue"
guivm = "gui"
tags = ["office"]
default_dispvm = "disp"

[[qube]]
name = "personal"
kind = "linux"
memory_mib = 256
label = "yellow"
guivm = "gui"

[[qube]]
name = "disp"
kind = "linux"
memory_mib = 192
label = "red"
disposable = true

[[qube]]
name = "usb"
kind = "unikernel"
image = "usb"
memory_mib = 8
label = "red"

[[policy]]
service = "qubes.VMShell"
source = "work"
target = "personal"
action = "allow"

[[policy]]
service = "qubes.VMShell"
source = "@anyvm"
target = "@dispvm"
action = "allow"

[[policy]]
service = "qubes.VMShell"
source = "@tag:office"
target = "usb"
action = "allow"

[[policy]]
service = "qubes.Filecopy"
source = "@anyvm"
target = "@default"
action = "ask"

[[policy]]
service = "qubes.Filecopy"
source = "@anyvm"
target = "@anyvm"
action = "ask"

[[policy]]
service = "qubes.ClipboardPaste"
source = "work"
target = "personal"
action = "deny"

[[policy]]
service = "qubes.ClipboardPaste"
source = "personal"
target = "work"
action = "ask"

[[policy]]
service = "qubes.ClipboardPaste"
source = "@anyvm"
target = "@anyvm"
action = "allow"

[[policy]]
service = "admin.vm.List"
source = "@anyvm"
target = "@adminvm"
action = "allow"

[[policy]]
service = "admin.vm.Start"
source = "work"
target = "@adminvm"
action = "allow"
"#;

pub const ADMIN: u8 = 0;
pub const GUI: u8 = 1;
pub const WORK: u8 = 2;
pub const PERSONAL: u8 = 3;
pub const DISP: u8 = 4;
pub const USB: u8 = 5;

/// The admin qube's configuration for [`SYSTEM`] (compiled once per process).
pub fn config() -> AdminConfig {
    static COMPILED: std::sync::OnceLock<AdminConfig> = std::sync::OnceLock::new();
    COMPILED
        .get_or_init(|| {
            let compiled = bulkhead_sysdesc::compile_str("relay-test.toml", SYSTEM)
                .unwrap_or_else(|d| panic!("{d:?}"));
            let blob = compiled
                .configs
                .iter()
                .find(|c| c.qube == usize::from(ADMIN))
                .expect("the admin qube has a blob");
            let admin = blob.config.admin.clone().expect("an admin configuration");
            admin.check().unwrap();
            admin
        })
        .clone()
}

/// The world the relay acts on.
pub struct Sim {
    /// Messages sent to each qube (encoded), oldest first.
    pub rings: BTreeMap<u8, VecDeque<Vec<u8>>>,
    /// Slots per ring.
    pub capacity: usize,
    pub running: [bool; 8],
    pub ready: [bool; 8],
    pub started: Vec<u8>,
    pub killed: Vec<u8>,
    pub now: u64,
    pub log: Vec<String>,
}

impl Default for Sim {
    fn default() -> Sim {
        Sim::new()
    }
}

impl Sim {
    pub fn new() -> Sim {
        Sim {
            rings: BTreeMap::new(),
            capacity: 32,
            // Every qube runs except the disposable.
            running: [true, true, true, true, false, true, true, true],
            ready: [true; 8],
            started: Vec::new(),
            killed: Vec::new(),
            now: 1_000,
            log: Vec::new(),
        }
    }

    /// Takes every message sent to `q`, decoded.
    pub fn take(&mut self, q: u8) -> Vec<Vec<u8>> {
        self.rings.entry(q).or_default().drain(..).collect()
    }

    /// Whether any log line contains `s`.
    pub fn logged(&self, s: &str) -> bool {
        self.log.iter().any(|l| l.contains(s))
    }
}

impl Host for Sim {
    fn send(&mut self, to: u8, msg: &FromAdmin<'_>) -> Result<(), Full> {
        let ring = self.rings.entry(to).or_default();
        if ring.len() >= self.capacity {
            return Err(Full);
        }
        let bytes = postcard::to_allocvec(msg).unwrap();
        assert!(bytes.len() <= bulkhead_abi::qrexec::QREXEC_SLOT_SIZE as usize);
        ring.push_back(bytes);
        Ok(())
    }

    fn room(&self, to: u8) -> usize {
        self.capacity
            .saturating_sub(self.rings.get(&to).map_or(0, VecDeque::len))
    }

    fn state(&self, q: u8) -> Option<QubeState> {
        let i = usize::from(q);
        (i <= usize::from(USB)).then(|| QubeState {
            running: self.running[i],
            ready: self.running[i] && self.ready[i],
            restarts: 0,
            uptime_ms: if self.running[i] { 65_000 } else { 0 },
        })
    }

    fn start(&mut self, q: u8) -> bool {
        let i = usize::from(q);
        if self.running[i] || q == HOST {
            return false;
        }
        self.running[i] = true;
        self.started.push(q);
        true
    }

    fn kill(&mut self, q: u8) -> bool {
        let i = usize::from(q);
        let was = self.running[i];
        self.running[i] = false;
        self.killed.push(q);
        was
    }

    fn now_ms(&self) -> u64 {
        self.now
    }

    fn log(&mut self, line: core::fmt::Arguments<'_>) {
        self.log.push(std::format!("{line}"));
    }
}

/// Decodes a message a qube received.
pub fn decode(bytes: &[u8]) -> FromAdmin<'_> {
    postcard::from_bytes(bytes).unwrap()
}

/// Says hello for each of `qubes` and drops the replies.
pub fn hello_all(relay: &mut Relay<'_>, sim: &mut Sim, qubes: &[u8]) {
    for &q in qubes {
        let hello = ToAdmin::Hello {
            version: bulkhead_abi::qrexec::QREXEC_VERSION,
        };
        assert_eq!(relay.on_message(sim, q, &hello), crate::Outcome::Done);
        let got = sim.take(q);
        assert!(matches!(decode(&got[0]), FromAdmin::Hello { .. }));
    }
}
