//! Services between qubes (qrexec, `docs/qrexec.md`). When the system has an admin qube,
//! each Linux qube, each gui qube and each `testing` qube gets an automatic channel **`<qube>.qrexec`**, purpose
//! `qrexec`, side A the qube and side B the admin qube, with a bulk area for file data; a
//! call's bytes are relayed through the admin qube. The admin qube's blob gets every qube and
//! the compiled policy ([`AdminConfig`]), the gui qube's blob its channel, and a Linux qube
//! reads its channel from its command line (`bulkhead.qrexec=<qube>.qrexec`).

use super::CompiledSystem;
use super::admin::Admin;
use super::channels::{Automatic, Channel, ring_channel_size};
use super::check::Checked;
use super::compile::blob_name;
use super::diagnostics::Diagnostics;
use super::gui::GUI_IMAGE;
use super::linux::is_linux;
use super::policy::Word;
use super::schema::Raw;
use bulkhead_abi::boot_info::NAME_MAX;
use bulkhead_policy::{Action, Argument, Redirect, Service};
use bulkhead_qubeconfig::{AdminConfig, AdminQube, QubeConfig, QubeKind};

/// The test image, which takes part in qrexec like a Linux qube.
const TESTING_IMAGE: &str = "testing";
/// The purpose of qrexec channels.
pub const PURPOSE: &str = "qrexec";
/// What a qrexec channel's name ends with.
pub const SUFFIX: &str = ".qrexec";
/// Bytes per slot of a qrexec channel: a call's header and its small messages.
pub const SLOT_SIZE: u32 = 2048;
/// Slots per ring of a qrexec channel.
pub const SLOTS: u32 = 32;
/// The bulk area of a qrexec channel, in KiB: file data, 1 MiB each way.
pub const BULK_KIB: u32 = 2048;

/// The name of `qube`'s qrexec channel.
pub fn channel_name(qube: &str) -> String {
    format!("{qube}{SUFFIX}")
}

/// The qrexec channels, in qube order, when the system has an admin qube (`admin.qube`): one
/// per Linux qube and gui qube. Names too long for a channel are reported.
pub(super) fn channels(
    raw: &Raw,
    admin: &Admin,
    text: &str,
    d: &mut Diagnostics,
) -> Vec<Automatic> {
    let Some(a) = admin.qube else {
        return Vec::new();
    };
    let qubes = &raw.qubes.items;
    let from = qubes[a].text("image").map(|(_, span)| span);
    let size = ring_channel_size(SLOT_SIZE, SLOTS);
    let mut out = Vec::new();
    for (i, q) in qubes.iter().enumerate() {
        // The `testing` image takes part too, so scenarios can check the admin qube
        // without booting Linux.
        let takes_part = is_linux(q)
            || q.text("image")
                .is_some_and(|(i, _)| i == GUI_IMAGE || i == TESTING_IMAGE);
        let Some((name, span)) = q.text("name").filter(|_| takes_part && i != a) else {
            continue;
        };
        if name.len() + SUFFIX.len() > NAME_MAX {
            let message = format!(
                "the qrexec channel would be called \"{}\", more than {NAME_MAX} bytes",
                channel_name(name)
            );
            let hint = format!(
                "with an admin qube, each Linux qube and gui qube has a qrexec channel: its name \
                 is at most {} bytes",
                NAME_MAX - SUFFIX.len()
            );
            d.push(text, Some(span), q.key("name"), message, hint);
            continue;
        }
        out.push(Automatic {
            channel: Channel {
                name: channel_name(name),
                a: i,
                b: a,
                size,
                slot_size: SLOT_SIZE,
                bulk_size: BULK_KIB * 1024,
                purpose: PURPOSE.to_string(),
            },
            key: qubes[a].key("image"),
            span: from.clone(),
        });
    }
    out
}

/// Whether qube `i` has a qrexec channel.
pub(super) fn has_channel(checked: &Checked, i: usize) -> bool {
    let name = channel_name(&checked.qubes[i].name);
    checked.channels.iter().any(|c| c.name == name)
}

/// Adds the qrexec parts to the blobs: each unikernel's channel (the gui qube's) and the
/// admin qube's [`AdminConfig`].
pub(super) fn configs(
    checked: &Checked,
    configs: &mut Vec<(usize, QubeConfig)>,
) -> Result<(), String> {
    let Some(admin) = checked.admin.qube else {
        return Ok(());
    };
    let facts = checked.admin.facts();
    let mut qubes = heapless::Vec::new();
    for (i, q) in checked.qubes.iter().enumerate() {
        let qrexec = match has_channel(checked, i) {
            true => Some(blob_name(&channel_name(&q.name))?),
            false => None,
        };
        if qrexec.is_some() && q.linux.is_none() {
            super::compile::config_of(configs, i).qrexec = qrexec.clone();
        }
        let qube = AdminQube {
            name: blob_name(&q.name)?,
            index: i as u8,
            label: q.label as u8,
            kind: match q.linux {
                Some(_) => QubeKind::Linux,
                None => QubeKind::Unikernel,
            },
            memory_mib: q.memory_mib,
            netvm: checked.network.netvm[i].map(|n| n as u8),
            qrexec,
            policy: facts[i],
        };
        qubes
            .push(qube)
            .map_err(|_| "too many qubes for the admin blob")?;
    }
    let gui = (0..checked.qubes.len())
        .find(|&i| checked.qubes[i].image == GUI_IMAGE && has_channel(checked, i));
    let mut tags = heapless::Vec::new();
    for t in &checked.admin.tags {
        tags.push(blob_name(t)?)
            .map_err(|_| "too many tags for the admin blob")?;
    }
    let config = AdminConfig {
        qubes,
        tags,
        gui: gui.map(|g| g as u8),
        policy: checked.policy.clone(),
    };
    config
        .check()
        .map_err(|e| format!("the admin blob is inconsistent: {e}"))?;
    super::compile::config_of(configs, admin).admin = Some(config);
    Ok(())
}

/// The admin qube, its tags and its policy, one entry per row as written; empty without an
/// admin qube.
pub(super) fn summary(c: &CompiledSystem) -> String {
    let Some((qube, admin)) = c
        .configs
        .iter()
        .find_map(|b| b.config.admin.as_ref().map(|a| (b.qube, a)))
    else {
        return String::new();
    };
    let name = |i: u8| {
        admin
            .qubes
            .get(usize::from(i))
            .map_or("?", |q| q.name.as_str())
    };
    let tag = |t: u8| admin.tags.get(usize::from(t)).map_or("?", |t| t.as_str());
    let mut out = format!(
        "\nqrexec: admin qube \"{}\", {} policy entr{} (first match wins, no match denies)",
        name(qube as u8),
        admin.policy.entries.len(),
        if admin.policy.entries.len() == 1 {
            "y"
        } else {
            "ies"
        }
    );
    if let Some(g) = admin.gui {
        out.push_str(&format!(", ask prompts on \"{}\"", name(g)));
    }
    out.push('\n');
    for (t, tag_name) in admin.tags.iter().enumerate() {
        let holders: Vec<&str> = admin
            .qubes
            .iter()
            .filter(|q| q.policy.tags.contains(t as u8))
            .map(|q| q.name.as_str())
            .collect();
        out.push_str(&format!("tag {tag_name}: {}\n", holders.join(", ")));
    }
    if admin.policy.entries.is_empty() {
        return out;
    }
    let word = |w: Word| match w {
        Word::Qube(i) => name(i).to_string(),
        Word::AnyVm => "@anyvm".to_string(),
        Word::Default => "@default".to_string(),
        Word::DispVm => "@dispvm".to_string(),
        Word::DispVmOf(i) => format!("@dispvm:{}", name(i)),
        Word::Tag(t) => format!("@tag:{}", tag(t)),
        Word::AdminVm => "@adminvm".to_string(),
    };
    let mut rows = vec![
        ["entry", "service", "source", "target", "action"]
            .map(String::from)
            .to_vec(),
    ];
    for (k, e) in admin.policy.entries.iter().enumerate() {
        let text = |i: u8| admin.policy.name(i).unwrap_or("?");
        let service = match e.service {
            Service::Any => "*".to_string(),
            Service::Named { name, argument } => match argument {
                Argument::Any => text(name).to_string(),
                Argument::Empty => format!("{}+", text(name)),
                Argument::Exactly(a) => format!("{}+{}", text(name), text(a)),
            },
        };
        let with = |action: &str, redirect: Option<Redirect>, default: Option<Redirect>| {
            let mut s = action.to_string();
            if let Some(r) = redirect {
                s.push_str(&format!(" redirect={}", word(Word::from(r))));
            }
            if let Some(r) = default {
                s.push_str(&format!(" default_target={}", word(Word::from(r))));
            }
            s
        };
        let action = match e.action {
            Action::Deny => "deny".to_string(),
            Action::Allow { redirect } => with("allow", redirect, None),
            Action::Ask {
                redirect,
                default_target,
            } => with("ask", redirect, default_target),
        };
        rows.push(vec![
            format!("policy[{k}]"),
            service,
            word(Word::from(e.source)),
            word(Word::from(e.target)),
            action,
        ]);
    }
    out.push_str(&super::compile::table(&rows));
    out
}
