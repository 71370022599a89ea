//! The boot bundle's entries, in order, and the Linux qubes' command lines:
//!
//! ```text
//! #0                      the manifest
//! #1 ..                   unikernel ELFs (Image), in order of first use
//! then per template       its kernel (LinuxKernel), its initramfs (Initrd), in order of first use
//! then                    configuration blobs (Config), in qube order
//! then                    Linux qubes' command lines (Cmdline), in qube order
//! ```
//!
//! A kernel and an initramfs are in the bundle once however many Linux qubes boot them:
//! the qubes share the entries by index.
//!
//! It also says, explicitly, where each qube's parts are ([`QubeEntries`]) and where each
//! channel sits in its two qubes' boot-info channel tables ([`ChannelEnds`]): a qube's
//! channels are numbered in manifest order, as the hypervisor fills the tables.

use super::channels::Channel;
use super::check::Checked;
use super::{CmdlineBlob, CompiledSystem, ConfigBlob, cmdline, network};
use bulkhead_abi::bundle::{ENTRY_NAME_LEN, EntryKind};

/// `<stem><suffix>`, the stem shortened so that it fits an entry name.
pub(super) fn entry_name(stem: &str, suffix: &str) -> String {
    let keep = stem.len().min(ENTRY_NAME_LEN - suffix.len());
    format!("{}{suffix}", &stem[..keep])
}

/// Where each part of the bundle starts, from the counts of each.
#[derive(Clone, Copy, Debug)]
pub(super) struct Numbering {
    pub images: usize,
    pub templates: usize,
    pub configs: usize,
}

impl Numbering {
    /// The bundle entry of unikernel image `i`.
    pub fn image(self, i: usize) -> usize {
        1 + i
    }
    /// The bundle entry of template `t`'s kernel.
    pub fn kernel(self, t: usize) -> usize {
        1 + self.images + 2 * t
    }
    /// The bundle entry of template `t`'s initramfs.
    pub fn initrd(self, t: usize) -> usize {
        self.kernel(t) + 1
    }
    /// The bundle entry of configuration blob `k`.
    pub fn config(self, k: usize) -> usize {
        1 + self.images + 2 * self.templates + k
    }
    /// The bundle entry of command line `m`.
    pub fn cmdline(self, m: usize) -> usize {
        self.config(self.configs) + m
    }
}

/// Where one qube's parts are in the bundle (entry indices; entry 0 is the manifest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QubeEntries {
    /// The unikernel's ELF, or the Linux qube's kernel (shared by the qubes of a template).
    pub image: usize,
    /// Its configuration blob: a unikernel with a netvm or clients has one.
    pub config: Option<usize>,
    /// A Linux qube's initramfs and command line.
    pub linux: Option<LinuxEntries>,
}

/// Where a Linux qube's initramfs and command line are in the bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinuxEntries {
    /// Its template's initramfs (shared by the qubes of the template).
    pub initrd: usize,
    /// Its own command line.
    pub cmdline: usize,
}

/// One end of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct End {
    /// The qube, by manifest index.
    pub qube: usize,
    /// The channel's position in that qube's boot-info channel table: the index the guest
    /// opens it by and its event bit; its window is at [`End::window`].
    pub local: usize,
}

impl End {
    /// Guest-physical address of the channel's window in this end's qube.
    pub fn window(self) -> u64 {
        bulkhead_abi::channel::window(self.local)
    }
}

/// A channel's two ends: side A and side B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelEnds {
    /// Side A (the first of `between`; a netvm; a qube starting a disposable).
    pub a: End,
    /// Side B.
    pub b: End,
}

/// Each qube's bundle entries, in qube order: `images` and `templates` are the bundle's
/// image and template lists, numbered by `n`.
pub(super) fn qube_entries(
    checked: &Checked,
    n: Numbering,
    images: &[String],
    templates: &[String],
    configs: &[ConfigBlob],
    cmdlines: &[CmdlineBlob],
) -> Result<Vec<QubeEntries>, String> {
    let position = |list: &[String], name: &str| list.iter().position(|x| x == name);
    checked
        .qubes
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let config = configs
                .iter()
                .position(|c| c.qube == i)
                .map(|k| n.config(k));
            let (image, linux) = match &q.linux {
                None => {
                    let index = position(images, &q.image).ok_or("image not listed")?;
                    (n.image(index), None)
                }
                Some(l) => {
                    let t = position(templates, &l.template).ok_or("template not listed")?;
                    let m = cmdlines
                        .iter()
                        .position(|c| c.qube == i)
                        .ok_or("command line not written")?;
                    let linux = LinuxEntries {
                        initrd: n.initrd(t),
                        cmdline: n.cmdline(m),
                    };
                    (n.kernel(t), Some(linux))
                }
            };
            Ok(QubeEntries {
                image,
                config,
                linux,
            })
        })
        .collect()
}

/// Each channel's ends, in channel order: a qube's channels take the next free position of
/// its table, in the order the manifest lists them.
pub(super) fn channel_ends(channels: &[Channel]) -> Vec<ChannelEnds> {
    let mut next: Vec<usize> = Vec::new();
    let mut end = |qube: usize| {
        if next.len() <= qube {
            next.resize(qube + 1, 0);
        }
        next[qube] += 1;
        End {
            qube,
            local: next[qube] - 1,
        }
    };
    channels
        .iter()
        .map(|c| ChannelEnds {
            a: end(c.a),
            b: end(c.b),
        })
        .collect()
}

/// What a bundle entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content<'a> {
    /// The ELF of the unikernel image with this name.
    Image(&'a str),
    /// The kernel of the template with this name.
    Kernel(&'a str),
    /// The initramfs of the template with this name.
    Initrd(&'a str),
    /// These bytes (a configuration blob or a command line).
    Bytes(&'a [u8]),
}

/// One bundle entry after the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Its index in the bundle.
    pub index: usize,
    pub kind: EntryKind,
    /// Its name in the bundle.
    pub name: String,
    pub content: Content<'a>,
}

impl CompiledSystem {
    /// Where each part of the bundle starts.
    pub(super) fn numbering(&self) -> Numbering {
        Numbering {
            images: self.images.len(),
            templates: self.templates.len(),
            configs: self.configs.len(),
        }
    }

    /// The bundle entries after the manifest, in order.
    pub fn entries(&self) -> Vec<Entry<'_>> {
        let images = self
            .images
            .iter()
            .map(|n| (EntryKind::Image, n.clone(), Content::Image(n)));
        let templates = self.templates.iter().flat_map(|t| {
            [
                (
                    EntryKind::LinuxKernel,
                    entry_name(t, ".kernel"),
                    Content::Kernel(t),
                ),
                (
                    EntryKind::Initrd,
                    entry_name(t, ".initrd"),
                    Content::Initrd(t),
                ),
            ]
        });
        let configs = self
            .configs
            .iter()
            .map(|c| (EntryKind::Config, c.entry.clone(), Content::Bytes(&c.bytes)));
        let cmdlines = self.cmdlines.iter().map(|c| {
            (
                EntryKind::Cmdline,
                c.entry.clone(),
                Content::Bytes(c.text.as_bytes()),
            )
        });
        images
            .chain(templates)
            .chain(configs)
            .chain(cmdlines)
            .enumerate()
            .map(|(i, (kind, name, content))| Entry {
                index: i + 1,
                kind,
                name,
                content,
            })
            .collect()
    }
}

/// The command line of every Linux qube of `checked`, in qube order.
pub(super) fn cmdlines(checked: &Checked) -> Result<Vec<CmdlineBlob>, String> {
    let plan = &checked.network;
    let mut out = Vec::new();
    for (i, q) in checked.qubes.iter().enumerate() {
        let Some(linux) = &q.linux else {
            continue;
        };
        let channel = network::channel_name(&q.name);
        let net = match (plan.netvm[i], plan.address[i]) {
            (Some(_), Some(address)) => Some(cmdline::Net {
                channel: &channel,
                address,
                prefix_len: plan.params.clients.prefix_len,
                gateway: plan.params.gateway,
                dns: &plan.params.dns,
            }),
            (Some(_), None) => return Err(format!("Linux qube {:?} has no address", q.name)),
            (None, _) => None,
        };
        let gui = checked
            .gui
            .iter()
            .any(|l| l.client == i)
            .then(|| super::gui::channel_name(&q.name));
        let qrexec =
            super::qrexec::has_channel(checked, i).then(|| super::qrexec::channel_name(&q.name));
        let has = |root: bool| {
            checked.storage.iter().any(|l| {
                l.client == i
                    && matches!(l.volume, super::storage::LinkVolume::TemplateRoot(_)) == root
            })
        };
        let home = has(false).then(|| super::storage::channel_name(&q.name));
        let root = has(true).then(|| super::storage::root_channel_name(&q.name));
        let channels = cmdline::Channels {
            gui: gui.as_deref(),
            qrexec: qrexec.as_deref(),
            home: home.as_deref(),
            root: root.as_deref(),
        };
        let text = cmdline::build(
            &q.name,
            &linux.template,
            net.as_ref(),
            channels,
            &linux.kernel_args,
        );
        if text.len() > cmdline::MAX_LEN {
            return Err(format!("the command line of {:?} is too long", q.name));
        }
        out.push(CmdlineBlob {
            qube: i,
            entry: entry_name(&q.name, ".cmdline"),
            text,
            kernel_args: linux.kernel_args.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_follows_the_documented_order() {
        let n = Numbering {
            images: 2,
            templates: 1,
            configs: 3,
        };
        assert_eq!((n.image(0), n.image(1)), (1, 2));
        assert_eq!((n.kernel(0), n.initrd(0)), (3, 4));
        assert_eq!((n.config(0), n.config(2)), (5, 7));
        assert_eq!(n.cmdline(0), 8);
    }

    #[test]
    fn each_qube_numbers_its_channels_in_order() {
        let channel = |a, b| Channel {
            name: String::new(),
            a,
            b,
            size: 0,
            slot_size: 0,
            bulk_size: 0,
            purpose: String::new(),
        };
        let ends = channel_ends(&[channel(0, 1), channel(2, 1), channel(0, 2)]);
        let pairs: Vec<_> = ends
            .iter()
            .map(|e| ((e.a.qube, e.a.local), (e.b.qube, e.b.local)))
            .collect();
        assert_eq!(
            pairs,
            [((0, 0), (1, 0)), ((2, 0), (1, 1)), ((0, 1), (2, 1))]
        );
        assert_eq!(ends[2].b.window(), 0x40_0000_0000 + 2 * 1024 * 1024);
    }

    #[test]
    fn entry_names_fit() {
        assert_eq!(entry_name("work", ".cmdline"), "work.cmdline");
        assert_eq!(
            entry_name(&"w".repeat(24), ".cmdline").len(),
            ENTRY_NAME_LEN
        );
    }
}
