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

use super::check::Checked;
use super::{CmdlineBlob, CompiledSystem, cmdline, network};
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
        let text = cmdline::build(&q.name, &linux.template, net.as_ref(), &linux.kernel_args);
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
    fn entry_names_fit() {
        assert_eq!(entry_name("work", ".cmdline"), "work.cmdline");
        assert_eq!(
            entry_name(&"w".repeat(24), ".cmdline").len(),
            ENTRY_NAME_LEN
        );
    }
}
