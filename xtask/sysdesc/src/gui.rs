//! `guivm = "gui"`: the qube whose screen shows this qube's windows. Each such qube gets an
//! automatic channel **`<qube>.gui`**, purpose `gui`, side A the gui qube and side B the
//! client, with a bulk area holding a surface of the largest window it may show
//! (`window_size = "WxH"`, default [`DEFAULT_WINDOW`]) and a clipboard's worth of room. The
//! gui qube's blob lists its clients with their labels and window sizes; a client's
//! `clipboard_deny = ["..."]` names the qubes its clipboard may never be pasted into.

use super::channels::{Automatic, Channel, ring_channel_size};
use super::diagnostics::Diagnostics;
use super::hints;
use super::schema::Raw;
use super::service_ref::{Service, ServiceRefs};
use bulkhead_abi::channel::MAX_BULK_SIZE;
use bulkhead_abi::gui::{BYTES_PER_PIXEL, CLIPBOARD_MAX, GUI_SLOT_SIZE};

/// The purpose of GUI channels.
pub const PURPOSE: &str = "gui";
/// What a GUI channel's name ends with.
pub const SUFFIX: &str = ".gui";
/// Slots per ring of a GUI channel.
pub const SLOTS: u32 = 64;
/// The largest window of a client that gives no `window_size`.
pub const DEFAULT_WINDOW: (u16, u16) = (640, 400);
/// The image a gui qube runs.
pub const GUI_IMAGE: &str = "gui";

/// One client of a gui qube.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct GuiLink {
    /// The client's and the gui qube's indices.
    pub client: usize,
    pub gui: usize,
    /// The largest window it may show.
    pub window: (u16, u16),
    /// The qubes (indices) its clipboard may not be pasted into.
    pub deny: Vec<usize>,
}

/// The name of `qube`'s GUI channel.
pub fn channel_name(qube: &str) -> String {
    format!("{qube}{SUFFIX}")
}

/// Bytes of the bulk area of a client that may show `w × h` windows: each pool holds a
/// surface of that size and a clipboard, in whole pages.
pub fn bulk_size(w: u16, h: u16) -> u32 {
    let surface = usize::from(w) * usize::from(h) * BYTES_PER_PIXEL;
    let pool = (surface + CLIPBOARD_MAX).next_multiple_of(4096);
    (2 * pool) as u32
}

/// `"WxH"` as a window size, if it is one the gui qube can show and the bulk area holds.
fn parse_size(s: &str) -> Option<(u16, u16)> {
    let (w, h) = s.split_once('x')?;
    let (w, h): (u16, u16) = (w.parse().ok()?, h.parse().ok()?);
    let ok = (64..=4096).contains(&w)
        && (64..=4096).contains(&h)
        && u64::from(bulk_size(w, h)) <= MAX_BULK_SIZE;
    ok.then_some((w, h))
}

/// How `guivm` names its gui qube.
const SERVICE: Service = Service {
    key: "guivm",
    image: GUI_IMAGE,
    role: "gui",
    itself: "cannot show its own windows through itself",
    itself_hint: "remove guivm from the gui qube",
    channel: "GUI",
    suffix: SUFFIX,
    none_hint: None,
};

/// Checks every `guivm`, `window_size` and `clipboard_deny`, and makes the GUI channels.
pub(super) fn links(raw: &Raw, text: &str, d: &mut Diagnostics) -> (Vec<Automatic>, Vec<GuiLink>) {
    let qubes = &raw.qubes.items;
    let refs = ServiceRefs::new(raw, &SERVICE);
    let (names, listed) = (&refs.names, &refs.listed);
    let size = ring_channel_size(GUI_SLOT_SIZE, SLOTS);
    let (mut channels, mut out) = (Vec::new(), Vec::new());
    for (i, q) in qubes.iter().enumerate() {
        let window = match q.text("window_size") {
            None => DEFAULT_WINDOW,
            Some((s, span)) => match parse_size(s) {
                Some(size) => size,
                None => {
                    let message = format!("window_size {} is not a window size", hints::quoted(s));
                    let hint = "write \"WIDTHxHEIGHT\" in pixels, each 64 to 4096, e.g. \
                                \"800x600\" (the surface and a clipboard must fit a 64 MiB \
                                bulk area)";
                    d.push(text, Some(span), q.key("window_size"), message, hint);
                    continue;
                }
            },
        };
        let Some((gui, span)) = q.text("guivm") else {
            for key in ["window_size", "clipboard_deny"] {
                if !q.absent(key) {
                    let message = format!("{key} without guivm");
                    let hint = "add guivm = \"gui\" (the qube that shows this one's windows), \
                                or remove this key";
                    d.push(text, q.span.clone(), q.key(key), message, hint);
                }
            }
            continue;
        };
        let key = q.key("guivm");
        let Some((j, me)) = refs.resolve(i, gui, &span, &key, text, d) else {
            continue;
        };
        channels.push(Automatic {
            channel: Channel {
                name: channel_name(me),
                a: j,
                b: i,
                size,
                slot_size: GUI_SLOT_SIZE,
                bulk_size: bulk_size(window.0, window.1),
                purpose: PURPOSE.to_string(),
            },
            key,
            span: Some(span),
        });
        out.push(GuiLink {
            client: i,
            gui: j,
            window,
            deny: Vec::new(),
        });
    }
    // The clipboard policy names other clients of the same gui qube.
    for link in &mut out {
        let q = &qubes[link.client];
        let Some((list, _)) = q.names("clipboard_deny") else {
            continue;
        };
        for (target, span) in list {
            match names.iter().position(|n| *n == Some(target.as_str())) {
                Some(j) if j != link.client => link.deny.push(j),
                Some(_) => d.push(
                    text,
                    Some(span.clone()),
                    q.key("clipboard_deny"),
                    format!("\"{target}\" is this qube"),
                    "a qube may always paste its own clipboard; remove it",
                ),
                None => d.push(
                    text,
                    Some(span.clone()),
                    q.key("clipboard_deny"),
                    format!("unknown qube {}", hints::quoted(target)),
                    hints::one_of("qubes", target, listed),
                ),
            }
        }
    }
    (channels, out)
}
