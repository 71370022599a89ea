//! `disposables = [...]`: the disposables (`disposable = true`) a qube may start. Each pair
//! gets an automatic channel, purpose `disposable`, side A the requester and side B the
//! disposable, named **`<disposable>.req<k>`** where `k` counts the disposable's requesters
//! in qube order from 0 (a channel name must fit 24 bytes, and two qube names do not). The
//! hypervisor starts a disposable when a requester first notifies it over that channel.

use super::channels::{Automatic, Channel, ring_channel_size};
use super::diagnostics::Diagnostics;
use super::hints;
use super::linux::is_disposable;
use super::schema::Raw;
use bulkhead_abi::boot_info::NAME_MAX;
use bulkhead_abi::proto::DISPOSABLE_SLOT_SIZE;

/// The purpose of a disposable's request channels.
pub const PURPOSE: &str = "disposable";
/// Slots per ring of a request channel: output chunks queue up while the requester reads.
pub const SLOTS: u32 = 32;
/// What the names of request channels end with, before the requester's number.
pub const SUFFIX: &str = ".req";

/// The name of the `k`-th request channel of `disposable`.
pub fn channel_name(disposable: &str, k: usize) -> String {
    format!("{disposable}{SUFFIX}{k}")
}

/// Checks every `disposables` list and makes the request channels, in requester order. A
/// disposable no qube may start is an error too: it could never run. The `bool` is false
/// when something is wrong (reported).
pub(super) fn channels(raw: &Raw, text: &str, d: &mut Diagnostics) -> (Vec<Automatic>, bool) {
    let qubes = &raw.qubes.items;
    let names = raw.qubes.item_names();
    let listed: Vec<&str> = names.iter().flatten().copied().collect();
    let disposables: Vec<&str> = qubes
        .iter()
        .zip(&names)
        .filter(|(q, _)| is_disposable(q))
        .filter_map(|(_, n)| *n)
        .collect();
    let known = raw.qubes.known();
    let size = ring_channel_size(DISPOSABLE_SLOT_SIZE, SLOTS);
    let mut ok = true;
    let mut requesters = vec![0usize; qubes.len()];
    let mut out = Vec::new();
    for (i, q) in qubes.iter().enumerate() {
        let Some((list, _)) = q.names("disposables") else {
            ok &= q.absent("disposables");
            continue;
        };
        let key = q.key("disposables");
        let mut seen: Vec<&str> = Vec::new();
        for (target, span) in list {
            let problem = if seen.contains(&target.as_str()) {
                Some((
                    format!("\"{target}\" is listed twice"),
                    "name each disposable once".to_string(),
                ))
            } else if names[i] == Some(target.as_str()) {
                Some((
                    format!("\"{target}\" cannot start itself"),
                    "list the disposables this qube may start, not the qube".to_string(),
                ))
            } else {
                match names.iter().position(|n| *n == Some(target.as_str())) {
                    None if !known => None,
                    None => Some((
                        format!("unknown disposable {}", hints::quoted(target)),
                        if disposables.is_empty() {
                            format!(
                                "there are no disposables: add a qube with disposable = \
                                 true; qubes are {}",
                                hints::list(&listed)
                            )
                        } else {
                            hints::one_of("disposables", target, &disposables)
                        },
                    )),
                    Some(j) if !is_disposable(&qubes[j]) => Some((
                        format!("\"{target}\" is not a disposable"),
                        format!(
                            "add disposable = true to qube \"{target}\" (started on request), \
                             or remove it from this list"
                        ),
                    )),
                    Some(j) if target.len() + SUFFIX.len() + 1 > NAME_MAX => Some((
                        format!(
                            "the request channel would be called \"{}\", more than {NAME_MAX} \
                             bytes",
                            channel_name(target, requesters[j])
                        ),
                        format!(
                            "a disposable has a name of at most {} bytes; shorten \"{target}\"",
                            NAME_MAX - SUFFIX.len() - 1
                        ),
                    )),
                    Some(j) => {
                        out.push(Automatic {
                            channel: Channel {
                                name: channel_name(target, requesters[j]),
                                a: i,
                                b: j,
                                size,
                                slot_size: DISPOSABLE_SLOT_SIZE,
                                bulk_size: 0,
                                purpose: PURPOSE.to_string(),
                            },
                            key: key.clone(),
                            span: Some(span.clone()),
                        });
                        requesters[j] += 1;
                        None
                    }
                }
            };
            seen.push(target);
            if let Some((message, hint)) = problem {
                d.push(text, Some(span.clone()), key.clone(), message, hint);
                ok = false;
            }
        }
    }
    for (j, q) in qubes.iter().enumerate() {
        let Some((true, span)) = q.flag("disposable") else {
            continue;
        };
        let Some(name) = names[j] else {
            continue;
        };
        if requesters[j] == 0 && ok {
            let message = format!("disposable \"{name}\" can never start: no qube may start it");
            let others: Vec<&str> = listed.iter().copied().filter(|n| *n != name).collect();
            let hint = if others.is_empty() {
                format!(
                    "add a qube with disposables = [\"{name}\"], the one that may start it, \
                     or remove disposable = true"
                )
            } else {
                format!(
                    "add disposables = [\"{name}\"] to the qube that may start it ({}), or \
                     remove disposable = true",
                    hints::list(&others)
                )
            };
            d.push(text, Some(span), q.key("disposable"), message, hint);
            ok = false;
        }
    }
    (out, ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit() {
        assert_eq!(channel_name("disp", 0), "disp.req0");
        let longest = "d".repeat(NAME_MAX - SUFFIX.len() - 1);
        assert_eq!(channel_name(&longest, 7).len(), NAME_MAX);
    }

    #[test]
    fn request_channels_hold_a_few_dozen_slots() {
        let size = ring_channel_size(DISPOSABLE_SLOT_SIZE, SLOTS);
        let g =
            bulkhead_abi::channel::Geometry::new(u64::from(size), DISPOSABLE_SLOT_SIZE).unwrap();
        assert!(g.slot_count >= SLOTS && size <= 256 * 1024, "{size}");
    }
}
