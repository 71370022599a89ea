//! The baseline: Linux forwarding and masquerading under nftables with the same rules,
//! between three network namespaces on this machine:
//!
//! ```text
//!  client ns            router ns                         server ns
//!  c0 10.137.0.5 ---- r0 10.137.0.1 | r1 192.168.77.50 ---- s0 192.168.77.1
//!                     ip_forward=1, nft: rules + masquerade on r1
//! ```
//!
//! A sender in one end namespace blasts UDP datagrams with `sendmmsg` for a few seconds; an
//! nftables ingress hook in the other end namespace counts and drops what arrives (so no
//! receiving socket costs anything). The flows are established first (one datagram each way),
//! so both directions go through `ct state established` and the NAT of an existing
//! connection, as in the engine measurement.

use crate::setup::{self, FLOWS};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Why the baseline cannot run here.
pub type Skip = String;

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String, String> {
    run(Command::new("ip").args(args))
}

fn dotted(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Checks root, `ip` and `nft`; installs nftables (Debian) when it is missing.
pub fn preflight() -> Result<(), Skip> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        return Err(
            "needs root (network namespaces, nftables): run the bench as root, \
                    e.g. `sudo -E cargo xtask bench --firewall`"
                .into(),
        );
    }
    if !have("ip") {
        return Err("`ip` (iproute2) is missing: apt-get install -y iproute2".into());
    }
    if !have("nft") {
        eprintln!("installing nftables: apt-get install -y nftables");
        let ok = Command::new("apt-get")
            .args(["install", "-y", "-q", "nftables"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok || !have("nft") {
            return Err("nftables is missing and could not be installed: \
                        apt-get update && apt-get install -y nftables"
                .into());
        }
    }
    Ok(())
}

/// The three namespaces; dropping it deletes them.
pub struct Net {
    prefix: String,
    exe: String,
    /// The server port -> translated client address, from the handshake.
    peers: Vec<String>,
}

impl Net {
    fn ns(&self, which: &str) -> String {
        format!("{}{which}", self.prefix)
    }

    /// `ip netns exec NS args...`
    fn exec(&self, which: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(which)]).args(args);
        c
    }

    fn nft(&self, which: &str, ruleset: &str) -> Result<(), String> {
        let mut child = self
            .exec(which, &["nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("nft: {e}"))?;
        child
            .stdin
            .take()
            .ok_or("nft stdin")?
            .write_all(ruleset.as_bytes())
            .map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "nft in {}: {}",
                self.ns(which),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// Creates the namespaces, links, addresses, routes and the router's ruleset, and
    /// establishes the flows.
    pub fn create() -> Result<Net, String> {
        remove_stale();
        let exe = std::env::current_exe()
            .map_err(|e| e.to_string())?
            .display()
            .to_string();
        let mut net = Net {
            prefix: format!("bhfw{}-", std::process::id()),
            exe,
            peers: Vec::new(),
        };
        for n in ["c", "r", "s"] {
            ip(&["netns", "add", &net.ns(n)])?;
        }
        let (c, r, s) = (net.ns("c"), net.ns("r"), net.ns("s"));
        ip(&[
            "link", "add", "c0", "netns", &c, "type", "veth", "peer", "name", "r0", "netns", &r,
        ])?;
        ip(&[
            "link", "add", "r1", "netns", &r, "type", "veth", "peer", "name", "s0", "netns", &s,
        ])?;
        let client = format!("{}/24", dotted(setup::CLIENT));
        let gateway = format!("{}/24", dotted(setup::GATEWAY));
        let uplink = format!("{}/24", dotted(setup::UPLINK));
        let server = format!("{}/24", dotted(setup::SERVER));
        for (ns, dev, addr) in [
            (&c, "c0", &client),
            (&r, "r0", &gateway),
            (&r, "r1", &uplink),
            (&s, "s0", &server),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&[
            "-n",
            &c,
            "route",
            "add",
            "default",
            "via",
            &dotted(setup::GATEWAY),
        ])?;
        run(net
            .exec("r", &["sysctl", "-q", "net.ipv4.ip_forward=1"])
            .stdout(Stdio::null()))?;
        net.nft("r", &setup::nft_ruleset())?;
        net.handshake()?;
        // Counting sinks at both ends, installed after the handshake they would swallow
        // (IPv4 only: ARP must still work).
        for (which, dev) in [("s", "s0"), ("c", "c0")] {
            net.nft(
                which,
                &format!(
                    "table netdev sink {{\n  chain ingress {{\n    type filter hook ingress device \"{dev}\" priority filter;\n    ether type ip counter drop\n  }}\n}}\n"
                ),
            )?;
        }
        Ok(net)
    }

    fn client_pairs(&self) -> String {
        (0..FLOWS)
            .map(|k| {
                format!(
                    "{}>{}:{}",
                    setup::CLIENT_PORT + k as u16,
                    dotted(setup::SERVER),
                    setup::SERVER_PORT + k as u16
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    fn server_pairs(&self) -> String {
        (0..FLOWS)
            .map(|k| format!("{}>{}", setup::SERVER_PORT + k as u16, self.peers[k]))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// One datagram each way per flow, so that conntrack has them established; records the
    /// translated client address the server saw for each.
    fn handshake(&mut self) -> Result<(), String> {
        let server = dotted(setup::SERVER);
        let first = setup::SERVER_PORT.to_string();
        let count = FLOWS.to_string();
        let mut echo = self
            .exec("s", &[&self.exe, "echo", &server, &first, &count, "3000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("echo: {e}"))?;
        // Wait for "ready" (the sockets are bound).
        let mut stdout = echo.stdout.take().ok_or("echo stdout")?;
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !seen.ends_with(b"ready\n") {
            use std::io::Read;
            if stdout.read(&mut byte).map_err(|e| e.to_string())? == 0 {
                break;
            }
            seen.push(byte[0]);
        }
        let client = dotted(setup::CLIENT);
        let hello = run(&mut self.exec(
            "c",
            &[&self.exe, "hello", &client, &self.client_pairs(), "3000"],
        ));
        let mut rest = String::new();
        {
            use std::io::Read;
            stdout
                .read_to_string(&mut rest)
                .map_err(|e| e.to_string())?;
        }
        let status = echo.wait().map_err(|e| e.to_string())?;
        hello?;
        if !status.success() {
            return Err(format!("the handshake failed: {rest}"));
        }
        self.peers = rest
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(_, peer)| peer.to_string()))
            .collect();
        if self.peers.len() != FLOWS {
            return Err(format!(
                "the handshake saw {} flows: {rest}",
                self.peers.len()
            ));
        }
        Ok(())
    }

    fn counter(&self, which: &str) -> Result<u64, String> {
        let out = run(&mut self.exec(
            which,
            &["nft", "list", "chain", "netdev", "sink", "ingress"],
        ))?;
        out.split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .ok_or(format!("no counter in: {out}"))
    }

    /// Frames per second that arrive at the far end when the near end blasts `frame_len`-byte
    /// frames for `seconds`, and frames per second the sender got out; `up` is client ->
    /// server.
    pub fn measure(&self, up: bool, frame_len: usize, seconds: f64) -> Result<(f64, f64), String> {
        let (from, to, bind, pairs) = if up {
            ("c", "s", dotted(setup::CLIENT), self.client_pairs())
        } else {
            ("s", "c", dotted(setup::SERVER), self.server_pairs())
        };
        let before = self.counter(to)?;
        let payload = (frame_len - setup::HEADERS).to_string();
        let out = run(&mut self.exec(
            from,
            &[
                &self.exe,
                "blast",
                &bind,
                &pairs,
                &payload,
                &seconds.to_string(),
            ],
        ))?;
        std::thread::sleep(Duration::from_millis(50));
        let after = self.counter(to)?;
        // "sent N in S s"
        let words: Vec<&str> = out.split_whitespace().collect();
        let sent: f64 = words
            .get(1)
            .and_then(|s| s.parse().ok())
            .ok_or(format!("blast said: {out}"))?;
        let secs: f64 = words
            .get(3)
            .and_then(|s| s.parse().ok())
            .ok_or(format!("blast said: {out}"))?;
        Ok(((after - before) as f64 / secs, sent / secs))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for n in ["c", "r", "s"] {
            let _ = ip(&["netns", "del", &self.ns(n)]);
        }
    }
}

/// Deletes namespaces a bench that died left behind (`bhfw<pid>-*` of a pid that is gone).
fn remove_stale() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix("bhfw")
            .and_then(|r| r.split_once('-'))
            .map(|(pid, _)| pid)
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}
