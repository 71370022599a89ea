//! The world of the simulated tests: two daemons, `work` (the source, whose socket the
//! commands use) and `personal` (the target), and the simulated admin qube between them,
//! over tiny rings (two 2 KiB slots each way).

use super::daemon::{Config, Daemon};
use super::sim_admin::{Chan, SimAdmin};
use crate::channel::ring::pair;
use crate::commands::{Context, run_named};
use bulkhead_abi::qrexec::QREXEC_SLOT_SIZE;
use std::io::Cursor;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Channel size: two 2 KiB slots per direction.
const TINY: usize = 16384;

pub struct World {
    pub admin: SimAdmin,
    pub daemons: Vec<Daemon<Chan>>,
    listener: UnixListener,
    pub socket: PathBuf,
    pub root: PathBuf,
    /// A daemon asked to power off.
    pub power_off: [bool; 2],
    /// The most call data each daemon's core ever buffered.
    pub max_buffered: [usize; 2],
}

impl World {
    /// `work` and `personal`; `personal` is a disposable when `disposable`.
    pub fn new(disposable: bool) -> World {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("qrexec-sim-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut daemons = Vec::new();
        let mut admin_ends = Vec::new();
        for (i, name) in ["work", "personal"].into_iter().enumerate() {
            let (qube, admin) = pair(TINY, QREXEC_SLOT_SIZE).unwrap();
            let home = root.join(name);
            std::fs::create_dir_all(&home).unwrap();
            let config = Config {
                home,
                disposable: disposable && i == 1,
                lookup: crate::services::lookup,
            };
            daemons.push(Daemon::new(qube, config));
            admin_ends.push(admin);
        }
        let socket = root.join("qrexec.sock");
        let listener = super::run::listen(&socket).unwrap();
        World {
            admin: SimAdmin::new(admin_ends, vec!["work", "personal"]),
            daemons,
            listener,
            socket,
            root,
            power_off: [false; 2],
            max_buffered: [0; 2],
        }
    }

    /// Every part does what it can; whether anything moved.
    pub fn step(&mut self) -> bool {
        let mut busy = false;
        while let Ok((sock, _)) = self.listener.accept() {
            self.daemons[0].add_client(sock);
            busy = true;
        }
        for (i, d) in self.daemons.iter_mut().enumerate() {
            let step = d.step(Instant::now());
            busy |= step.busy;
            self.power_off[i] |= step.power_off;
            self.max_buffered[i] = self.max_buffered[i].max(d.core.buffered_bytes());
            d.take_notes();
        }
        busy | self.admin.step()
    }

    /// Steps until `done` (at most a minute).
    pub fn until(&mut self, mut done: impl FnMut(&mut World) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "the world stalled: {}",
                self.state()
            );
            if !self.step() {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }

    /// What each part holds (for a stall's message).
    fn state(&self) -> String {
        let daemons: Vec<String> = self.daemons.iter().map(|d| d.state()).collect();
        format!("{daemons:?}, admin {:?}", self.admin.state())
    }

    /// Runs a command against `work`'s daemon with `stdin`; its status, stdout and stderr.
    pub fn command(&mut self, args: &[&str], stdin: &[u8]) -> (u8, String, String) {
        let handle = self.spawn_command(args, stdin);
        self.until(|_| handle.is_finished());
        handle.join().unwrap()
    }

    pub fn spawn_command(&self, args: &[&str], stdin: &[u8]) -> JoinHandle<(u8, String, String)> {
        let (socket, stdin) = (self.socket.clone(), stdin.to_vec());
        let name = args[0].to_string();
        let args: Vec<String> = args[1..].iter().map(|a| a.to_string()).collect();
        std::thread::spawn(move || {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let mut ctx = Context {
                socket,
                has_channel: true,
                stdin: Box::new(Cursor::new(stdin)),
                stdout: &mut out,
                stderr: &mut err,
                tty: [false; 2],
            };
            let status = run_named(&name, &args, &mut ctx).unwrap();
            let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
            (status, text(out), text(err))
        })
    }

    /// The folder where `personal` receives `work`'s files.
    pub fn incoming(&self) -> PathBuf {
        self.root.join("personal/QubesIncoming/work")
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
