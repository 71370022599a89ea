//! The services the admin qube serves itself (Qubes' admin API, target `@adminvm`):
//! `admin.vm.List` (what `qvm-ls` prints), `admin.vm.Start+NAME`, `admin.vm.Shutdown+NAME`,
//! `admin.vm.Kill+NAME`. Each answers at once: its output, then its exit code.

use crate::calls::State;
use crate::{HOST, Host, Relay, SHUTDOWN_TIMEOUT_MS};
use bulkhead_abi::hypercall::QubeState;
use bulkhead_abi::qrexec::{DATA_MAX, FromAdmin, Io, Stream};
use bulkhead_qubeconfig::QubeKind;
use core::fmt::Write;
use heapless::String;

/// Messages a reply takes in the source's ring: accepted, stdout, stderr, two EOFs, exit.
const REPLY_MESSAGES: usize = 6;

/// What a local service answered, kept until the source's ring takes it.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The exit code.
    pub code: i32,
    /// Print the qube list (made when sent, so it is current).
    pub list: bool,
    /// What goes to stderr.
    pub message: String<96>,
}

impl Relay<'_> {
    /// Runs call `i` (whose target is the admin qube) and answers when the ring allows.
    pub(crate) fn serve_locally(&mut self, host: &mut impl Host, i: usize) {
        let c = &self.calls[i];
        let mut reply = Reply {
            code: 0,
            list: false,
            message: String::new(),
        };
        let named = self.index_of_name(&c.argument);
        let mut fail = |code, args: core::fmt::Arguments<'_>| {
            reply.code = code;
            let _ = reply.message.write_fmt(args);
        };
        let qube = &c.argument;
        match (c.service.as_str(), named) {
            ("admin.vm.List", _) => reply.list = true,
            ("admin.vm.Start" | "admin.vm.Shutdown" | "admin.vm.Kill", None) => {
                fail(2, format_args!("no qube named {qube:?}\n"));
            }
            (_, Some(q)) if self.config.qubes[usize::from(q)].policy.admin => {
                fail(1, format_args!("{qube} is the admin qube\n"));
            }
            ("admin.vm.Start", Some(q)) => {
                if host.state(q).is_some_and(|s| s.running) {
                    fail(1, format_args!("{qube} is already running\n"));
                } else if host.start(q) {
                    host.log(format_args!("{qube} started by {}", self.name(c.source)));
                } else {
                    fail(1, format_args!("{qube} could not be started\n"));
                }
            }
            ("admin.vm.Shutdown" | "admin.vm.Kill", Some(q))
                if !host.state(q).is_some_and(|s| s.running) =>
            {
                fail(1, format_args!("{qube} is not running\n"));
            }
            ("admin.vm.Shutdown", Some(q)) => {
                let polite = self.is_up(q) && host.send(q, &FromAdmin::Shutdown).is_ok();
                if polite {
                    let deadline = host.now_ms() + SHUTDOWN_TIMEOUT_MS;
                    let _ = self.shutdowns.push((q, deadline));
                    host.log(format_args!(
                        "{qube}: asked to shut down by {}",
                        self.name(c.source)
                    ));
                } else {
                    // A unikernel keeps no state worth a clean shutdown.
                    host.log(format_args!(
                        "{qube}: shut down (killed) by {}",
                        self.name(c.source)
                    ));
                    host.kill(q);
                }
            }
            ("admin.vm.Kill", Some(q)) => {
                host.log(format_args!("{qube}: killed by {}", self.name(c.source)));
                if !host.kill(q) {
                    fail(1, format_args!("{qube} could not be killed\n"));
                }
            }
            (service, _) => fail(
                127,
                format_args!("the admin qube has no service {service}\n"),
            ),
        }
        self.calls[i].state = State::Reply(reply);
    }

    /// Sends call `i`'s reply if the source's ring has room; true when sent.
    pub(crate) fn send_reply(&mut self, host: &mut impl Host, i: usize) -> bool {
        let c = &self.calls[i];
        let State::Reply(ref reply) = c.state else {
            return true;
        };
        if host.room(c.source) < REPLY_MESSAGES {
            return false;
        }
        let out = if reply.list {
            self.list(host)
        } else {
            String::new()
        };
        let call = c.source_call;
        let msgs = [
            FromAdmin::Accepted {
                call,
                target: "@adminvm",
            },
            FromAdmin::Io(Io::Data {
                call,
                stream: Stream::Stdout,
                bytes: out.as_bytes(),
            }),
            FromAdmin::Io(Io::Data {
                call,
                stream: Stream::Stderr,
                bytes: reply.message.as_bytes(),
            }),
            FromAdmin::Io(Io::Eof {
                call,
                stream: Stream::Stdout,
            }),
            FromAdmin::Io(Io::Eof {
                call,
                stream: Stream::Stderr,
            }),
            FromAdmin::Io(Io::Exit {
                call,
                code: reply.code,
            }),
        ];
        for m in &msgs {
            let empty = matches!(m, FromAdmin::Io(Io::Data { bytes, .. }) if bytes.is_empty());
            if !empty {
                let _ = host.send(c.source, m);
            }
        }
        true
    }

    /// The qubes as `qvm-ls` prints them: name, state, class, label, memory, netvm, uptime.
    pub fn list(&self, host: &impl Host) -> String<DATA_MAX> {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<16} {:<8} {:<10} {:<7} {:>6} {:<12} {:>8}",
            "NAME", "STATE", "CLASS", "LABEL", "MEMORY", "NETVM", "UPTIME"
        );
        for q in &self.config.qubes {
            let state = host.state(q.index).unwrap_or(QubeState::from_u64(0));
            let class = match (q.policy.admin, q.policy.disposable, q.kind) {
                (true, ..) => "AdminVM",
                (_, true, _) => "DispVM",
                (_, _, QubeKind::Linux) => "AppVM",
                (_, _, QubeKind::Unikernel) => "Unikernel",
            };
            let label = bulkhead_abi::label::Label::ALL
                .get(usize::from(q.label))
                .map_or("?", |l| l.name());
            let netvm = q.netvm.map_or("-", |n| self.name(n));
            let status = match (state.running, state.ready) {
                (false, _) => "Halted",
                (true, true) => "Running",
                (true, false) => "Starting",
            };
            let secs = state.uptime_ms / 1000;
            let line = writeln!(
                out,
                "{:<16} {:<8} {:<10} {:<7} {:>6} {:<12} {:>2}:{:02}:{:02}",
                q.name.as_str(),
                status,
                class,
                label,
                q.memory_mib,
                netvm,
                secs / 3600,
                secs / 60 % 60,
                secs % 60
            );
            if line.is_err() {
                break;
            }
        }
        out
    }

    fn index_of_name(&self, name: &str) -> Option<u8> {
        let i = self.config.qubes.iter().position(|q| q.name == name)?;
        u8::try_from(i).ok().filter(|&i| i != HOST)
    }
}
