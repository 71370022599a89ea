//! The agent's orchestration: open the channels, set up the network, start the services and
//! the GUI client (its own thread, [`crate::gui::run`]), say `agent: ready`, then one event loop that `poll`s the TAP interface, every channel's
//! uio descriptor and a running command's output, with timeouts.
//!
//! With a template root (`bulkhead.root=`), the parts that start programs (the GUI's
//! terminals, the qrexec services, a disposable's command: `Starters`) start only once
//! `/init` has mounted the root or given up, and the agent has moved into it
//! ([`crate::root`]): the network, the volumes and the loop run from the start.
//!
//! Each round lets every part do its non-blocking work ([`NetBridge::pump`],
//! [`DisposableService::step`]); then, if nothing moved, each channel sets its waiting flag
//! (so the peer rings the doorbell) and the loop sleeps in `poll`; an interrupt is
//! acknowledged ([`UioChannel::on_interrupt`]) and the round starts again.

use crate::blockdev::{self, ROOT, Role};
use crate::bridge::NetBridge;
use crate::channel::uio::{self, UioChannel};
use crate::channel::{ChannelError, Side};
use crate::config::Settings;
use crate::log::{line, printable};
use crate::net::{self, Tap};
use crate::root;
use crate::services::disposable::{DisposableService, ShellRunner, is_request_channel};
use crate::services::{self, disposable};
use crate::sys::{self, Watch};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

/// Longest sleep without any event: resets are noticed at least this often.
const TICK: Duration = Duration::from_millis(250);
/// Sleep between looks at a channel without an interrupt line.
const POLL_EVERY: Duration = Duration::from_millis(2);
/// While traffic flows (the last wake-up moved frames), the agent sleeps this long without
/// arming the firewall channel's interrupt, then looks at the ring again (NAPI's idea): a
/// timer wake-up costs the AppVM about five VM exits, an interrupt through `uio_pci_generic`
/// about twelve (its handler masks INTx through configuration space, the agent takes the
/// event and unmasks), and the firewall's doorbell one more. A wake-up that finds nothing
/// arms the interrupt again.
const NAPI_POLL: Duration = Duration::from_micros(1000);
/// After this long without the firewall's `Hello`, say so (once).
const HELLO_PATIENCE: Duration = Duration::from_secs(10);
/// How long `agent: ready` waits for `/home` to be mounted (or to fail) when the qube has a
/// home volume: services that start on ready must find it; after this it is said anyway.
const HOME_PATIENCE: Duration = Duration::from_secs(60);
/// How long the agent waits for `/init` to mount the template's root (or to give up) before
/// it starts its programs in the initramfs instead.
const ROOT_PATIENCE: Duration = Duration::from_secs(60);

/// Finds, binds and opens every channel device; logs one line per channel or problem.
pub fn open_channels() -> Vec<UioChannel> {
    if !Path::new(uio::PCI_DEVICES).exists() {
        line("no PCI bus in sysfs: no channels");
        return Vec::new();
    }
    let (found, bad) = uio::scan(Path::new(uio::PCI_DEVICES));
    for (address, why) in bad {
        line(&format!("channel device {address} left out: {why}"));
    }
    if found.is_empty() {
        line("no channels (no Bulkhead channel devices on the PCI bus)");
        return Vec::new();
    }
    if let Err(e) = uio::bind_all(&found) {
        line(&format!(
            "binding the channel devices to uio_pci_generic: {e}"
        ));
    }
    let mut open = Vec::new();
    for f in found {
        let (address, name) = (f.address.clone(), printable(f.info.name.as_str(), 32));
        let (side, kib) = (if f.info.side == 0 { 'A' } else { 'B' }, f.info.size / 1024);
        match UioChannel::open(f) {
            Ok(ch) => {
                let irq = if ch.irq_fd().is_some() {
                    "interrupts"
                } else {
                    "polled (no IRQ)"
                };
                let bulk = match ch.found.info.bulk_size {
                    0 => String::new(),
                    n => format!(", bulk area {} KiB", n / 1024),
                };
                line(&format!(
                    "channel {name}: side {side}, {kib} KiB{bulk} at {address}, {irq}"
                ));
                open.push(ch);
            }
            Err(e) => line(&format!(
                "channel {name} at {address} cannot be opened: {e}"
            )),
        }
    }
    open
}

/// Creates the TAP interface and configures it as `settings` say; logs what it did.
fn setup_network(settings: &Settings, has_link: bool) -> Option<Tap> {
    let tap = match Tap::create(net::IFNAME) {
        Ok(t) => t,
        Err(e) => {
            line(&format!(
                "cannot create the TAP interface {}: {e}",
                net::IFNAME
            ));
            return None;
        }
    };
    if let Some(e) = &tap.offload_error {
        line(&format!("{}: offloads off ({e})", tap.name));
    }
    match &settings.net {
        Some(cfg) => match net::configure(cfg, &tap.name) {
            Ok(()) => {
                let gw = cfg.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
                let dns: Vec<String> = cfg.dns.iter().map(|d| d.to_string()).collect();
                let dns = if dns.is_empty() {
                    "none".into()
                } else {
                    dns.join(" ")
                };
                line(&format!(
                    "{} {}/{}{gw}, dns {dns}",
                    tap.name, cfg.address, cfg.prefix_len
                ));
            }
            Err(e) => line(&format!("configuring {}: {e}", tap.name)),
        },
        None => {
            line(&format!(
                "no bulkhead.ip= on the command line: {} has no address",
                tap.name
            ));
            if let Err(e) = net::link_up(&tap.name) {
                line(&format!("{e}"));
            }
        }
    }
    if !has_link {
        line(&format!(
            "no channel to the firewall: {} has no link",
            tap.name
        ));
    }
    Some(tap)
}

/// Runs the agent. Returns only on an error the loop cannot go on with, or when a
/// disposable is done and powering off failed.
pub fn run(settings: &Settings) -> io::Result<()> {
    for e in &settings.errors {
        line(&format!("{e} (ignored)"));
    }
    let mut channels = open_channels();
    let net_name = settings.net_channel_name();
    let net_ch = net_name
        .as_deref()
        .and_then(|n| take(&mut channels, &|c| c.found.info.name.as_str() == n));
    // `<name>.net` is only a guess: say so only when bulkhead.net= named a missing channel.
    if let (Some(n), None) = (&settings.net_channel, &net_ch) {
        line(&format!(
            "no channel named {n} (bulkhead.net=): no link to the firewall"
        ));
    }
    let gui_ch = settings
        .gui_channel
        .as_deref()
        .and_then(|n| take(&mut channels, &|c| c.found.info.name.as_str() == n));
    if let (Some(n), None) = (&settings.gui_channel, &gui_ch) {
        line(&format!("no channel named {n} (bulkhead.gui=): no windows"));
    }
    // The private volume and the template's root, each served in threads of its own for
    // `/init` to mount; not when the block-hostile self-test takes their channels.
    if !blockdev::hostile::leave_volumes(settings, &mut channels) {
        serve_volumes(settings, &mut channels);
    }
    let disp_ch = take(&mut channels, &|c| {
        c.ring.side() == Side::B && is_request_channel(&c.found.info.name)
    });
    let qrexec_ch = settings
        .qrexec_channel
        .as_deref()
        .and_then(|n| take(&mut channels, &|c| c.found.info.name.as_str() == n));
    if let (Some(n), None) = (&settings.qrexec_channel, &qrexec_ch) {
        line(&format!(
            "no channel named {n} (bulkhead.qrexec=): no services between qubes"
        ));
    }
    let mut starters = Some(Starters {
        gui: gui_ch,
        qrexec: qrexec_ch,
        disposable: disp_ch,
    });
    let mut disposable = None;
    if settings.root_channel.is_none() {
        disposable = starters.take().and_then(|s| s.start(settings));
    }
    // Request channels on which this qube is side A belong to `dispvm`, which opens one
    // itself for each request: the agent closes them and never touches their rings.
    channels.retain(|c| {
        let name = c.found.info.name.as_str();
        match disposable::requested_disposable(name) {
            Some(d) if c.ring.side() == Side::A => {
                line(&format!(
                    "channel {}: requests to the disposable {}, made by `dispvm` (closed here)",
                    printable(name, 32),
                    printable(d, 32)
                ));
                false
            }
            _ => true,
        }
    });
    for c in &channels {
        line(&format!(
            "channel {}: no service uses it",
            printable(&c.found.info.name, 32)
        ));
    }

    let tap = if settings.net.is_some() || net_ch.is_some() {
        setup_network(settings, net_ch.is_some())
    } else {
        line("no network settings and no channel to the firewall: no network");
        None
    };
    let mut bridge = match (net_ch, &tap) {
        (Some(ch), Some(_)) => {
            let name = ch.found.info.name.to_string();
            Some(NetBridge::new(ch, &name, settings.qube()))
        }
        _ => None,
    };
    let mut tap = tap;
    let started = Instant::now();
    let mut ready = false;
    let mut impatient = false;
    // Frames moved since the last sleep: the next one polls instead of arming the interrupt.
    let mut flowing = false;
    loop {
        let now = Instant::now();
        let mut busy = false;
        let mut soon: Option<Duration> = Some(TICK);
        let mut sooner = |d: Option<Duration>| {
            if let Some(d) = d {
                soon = Some(soon.map_or(d, |s| s.min(d)));
            }
        };
        if let (Some(b), Some(t)) = (&mut bridge, &mut tap) {
            let moved = b.pump(t);
            busy |= moved;
            flowing |= moved && b.is_up();
            for n in b.take_notes() {
                line(&n);
            }
            if b.has_pending() {
                sooner(Some(Duration::from_millis(1)));
            }
        }
        if let Some(d) = &mut disposable {
            busy |= d.step(now);
            for n in d.take_notes() {
                line(&n);
            }
            sooner(d.next_step_in());
            if d.finished() {
                line("disposable: done, powering off");
                return Err(sys::power_off());
            }
        }
        // With a template root: once /init has mounted it (or given up), move into it, then
        // start what runs programs (once: a root mounted later is not entered).
        if starters.is_some()
            && let Some(o) = root::outcome(&ROOT, started.elapsed() > ROOT_PATIENCE)
        {
            root::settle(&o, settings.net.as_ref());
            disposable = starters.take().and_then(|s| s.start(settings));
            continue;
        }
        let link_up = bridge.as_ref().is_none_or(|b| b.is_up());
        // With a home volume, ready waits for /init to have mounted it (or given up).
        let home_settled = || {
            settings.home_channel.is_none()
                || std::path::Path::new(crate::blockdev::MOUNTED).exists()
                || std::path::Path::new(crate::blockdev::FAILED).exists()
                || started.elapsed() > HOME_PATIENCE
        };
        if !ready && link_up && home_settled() && starters.is_none() {
            ready = true;
            line(&format!(
                "ready (services: {})",
                services::names().join(" ")
            ));
            // For scripts that wait for the agent (the self-tests of `cargo xtask test`).
            let _ = std::fs::write("/run/agent.ready", b"ready\n");
        }
        if !ready && !impatient && started.elapsed() > HELLO_PATIENCE {
            impatient = true;
            let mut waits = Vec::new();
            if !link_up {
                waits.push("the firewall's Hello");
            }
            if !home_settled() {
                waits.push("/home");
            }
            if starters.is_some() {
                waits.push("the template's root");
            }
            line(&format!("still waiting for {}", waits.join(" and ")));
        }
        if busy {
            continue;
        }
        wait(&mut bridge, &mut disposable, tap.as_ref(), soon, flowing)?;
        flowing = false;
    }
}

/// Takes the first channel `pick` chooses out of `channels`.
fn take(channels: &mut Vec<UioChannel>, pick: &dyn Fn(&UioChannel) -> bool) -> Option<UioChannel> {
    let i = channels.iter().position(pick)?;
    Some(channels.remove(i))
}

/// Takes the block channels `settings` name out of `channels` and serves each volume as its
/// NBD device, in threads of its own; a volume that cannot be served is written to its
/// `failed` file, so `/init` stops waiting for it.
fn serve_volumes(settings: &Settings, channels: &mut Vec<UioChannel>) {
    // The private volume, served as /dev/nbd0 in threads of its own (`/init` mounts it).
    let home_ch = settings
        .home_channel
        .as_deref()
        .and_then(|n| take(channels, &|c| c.found.info.name.as_str() == n));
    match (&settings.home_channel, home_ch) {
        (Some(n), None) => {
            line(&format!(
                "no channel named {n} (bulkhead.home=): no /home volume"
            ));
            let _ = std::fs::write(crate::blockdev::FAILED, b"no block channel\n");
        }
        (_, Some(ch)) => {
            if let Err(e) = crate::blockdev::spawn(ch, Role::Home) {
                line(&format!("cannot start the home thread: {e}"));
                let _ = std::fs::write(crate::blockdev::FAILED, b"no home thread\n");
            }
        }
        (None, None) => {}
    }
    // The template's root, served as /dev/nbd1 under dm-verity (`/init` mounts it): never
    // without its verity parameters.
    let root_ch = settings
        .root_channel
        .as_deref()
        .and_then(|n| take(channels, &|c| c.found.info.name.as_str() == n));
    match (&settings.root_channel, root_ch, &settings.verity) {
        (Some(n), None, _) => {
            blockdev::fail(&ROOT, &format!("no channel named {n} (bulkhead.root=)"));
        }
        (Some(_), Some(_), None) => blockdev::fail(
            &ROOT,
            "no verity parameters: an unverified root is never mounted",
        ),
        (Some(_), Some(ch), Some(v)) => {
            if let Err(e) = blockdev::spawn(ch, Role::Root(*v)) {
                blockdev::fail(&ROOT, &format!("cannot start the root thread: {e}"));
            }
        }
        (None, ..) => {}
    }
}

/// The parts that start programs, held back while the template's root is not settled.
struct Starters {
    gui: Option<UioChannel>,
    qrexec: Option<UioChannel>,
    disposable: Option<UioChannel>,
}

impl Starters {
    /// Starts the GUI client and the qrexec daemon in threads of their own; returns the
    /// disposable's service for the loop, if this qube is a disposable.
    fn start(self, settings: &Settings) -> Option<Disp> {
        // The windows run in a thread of their own (drawing never slows the network).
        if let Some(ch) = self.gui
            && let Err(e) = crate::gui::run::spawn(ch, settings.qube())
        {
            line(&format!("cannot start the GUI thread: {e}"));
        }
        if let Some(ch) = self.qrexec {
            // A disposable (it has a request channel) serves one call, then powers off.
            let config = crate::qrexec::daemon::Config {
                home: services::call::home(),
                disposable: self.disposable.is_some(),
                lookup: services::lookup,
            };
            if let Err(e) = crate::qrexec::run::spawn(ch, config) {
                line(&format!("cannot start the qrexec thread: {e}"));
            }
        }
        self.disposable.map(|ch| {
            let name = ch.found.info.name.to_string();
            let t = settings.template.as_deref();
            if t.is_none() {
                line(&format!(
                    "{name}: no bulkhead.template=: every request will be refused"
                ));
            }
            DisposableService::new(ch, &name, settings.qube(), t, ShellRunner::default())
        })
    }
}

type Bridge = NetBridge<UioChannel>;
type Disp = DisposableService<UioChannel, ShellRunner>;

/// Sleeps until an interrupt, a frame, command output or `timeout`; if `flowing`, the
/// bridge's channel is not armed and the sleep lasts at most [`NAPI_POLL`].
fn wait(
    bridge: &mut Option<Bridge>,
    disposable: &mut Option<Disp>,
    tap: Option<&Tap>,
    mut timeout: Option<Duration>,
    flowing: bool,
) -> io::Result<()> {
    // Fixed arrays: this runs on every wake-up, without allocating.
    let none = Watch {
        fd: -1,
        readable: false,
    };
    let mut watches = [none; 4];
    let mut n = 0;
    let mut watch = |fd| {
        watches[n] = Watch {
            fd,
            readable: false,
        };
        n += 1;
    };
    if let Some(fd) = disposable.as_ref().and_then(|d| d.output_fd()) {
        watch(fd);
    }
    if let Some(t) = tap {
        watch(t.fd());
    }
    // The channels (0: the bridge's, 1: the disposable's) announce the wait; a message
    // already there, or news of a reset, cancels the sleep.
    let mut errors: [Option<ChannelError>; 2] = [None, None];
    let mut chans: [Option<&mut UioChannel>; 2] = [
        bridge.as_mut().map(|b| b.transport_mut()),
        disposable.as_mut().map(|d| d.transport_mut()),
    ];
    let mut armed = [false; 2];
    for (i, ch) in chans.iter_mut().enumerate() {
        let Some(ch) = ch else { continue };
        if i == 0 && flowing && ch.irq_fd().is_some() {
            timeout = Some(timeout.map_or(NAPI_POLL, |t| t.min(NAPI_POLL)));
            continue;
        }
        armed[i] = true;
        if let Err(e) = ch.rearm() {
            ch.ack_errors += 1;
            if ch.ack_errors == 1 {
                let name = printable(&ch.found.info.name, 32);
                line(&format!("channel {name}: acknowledging an interrupt: {e}"));
            }
        }
        match ch.ring.prepare_wait() {
            Ok(false) => {}
            Ok(true) => timeout = Some(Duration::ZERO),
            // A reset: the owner greets again at once. A breach: nothing to wait for on
            // this ring until a reset, which the tick notices (no spinning).
            Err(e) => {
                if e == ChannelError::Reset {
                    timeout = Some(Duration::ZERO);
                }
                errors[i] = Some(e);
            }
        }
        match ch.irq_fd() {
            Some(fd) => watch(fd),
            None => timeout = Some(timeout.map_or(POLL_EVERY, |t| t.min(POLL_EVERY))),
        }
    }
    let watches = &mut watches[..n];
    if timeout != Some(Duration::ZERO) {
        sys::poll(watches, timeout)?;
    }
    for (i, ch) in chans.iter_mut().enumerate() {
        let Some(ch) = ch else { continue };
        if !armed[i] {
            continue;
        }
        ch.ring.finish_wait();
        let fired = ch
            .irq_fd()
            .is_some_and(|fd| watches.iter().any(|w| w.fd == fd && w.readable));
        // INTx stays masked until the next armed sleep (`rearm`).
        if fired && let Err(e) = ch.take_interrupt() {
            ch.ack_errors += 1;
            if ch.ack_errors == 1 {
                let name = printable(&ch.found.info.name, 32);
                line(&format!("channel {name}: acknowledging an interrupt: {e}"));
            }
        }
    }
    if let (Some(e), Some(b)) = (errors[0], bridge.as_mut()) {
        b.channel_error(e);
    }
    if let (Some(e), Some(d)) = (errors[1], disposable.as_mut()) {
        d.channel_error(e);
    }
    Ok(())
}
