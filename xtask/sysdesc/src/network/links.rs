//! Each qube's `netvm`: resolved, checked (known, not itself, no cycles, reaching a
//! network, one client per card owner) and turned into the automatic channels.

use super::{CHANNEL_SUFFIX, PURPOSE, channel_name};
use crate::channels::{Automatic, Channel, net_channel_size};
use crate::diagnostics::Diagnostics;
use crate::hints;
use crate::schema::{Raw, Section};
use bulkhead_abi::boot_info::NAME_MAX;
use bulkhead_abi::proto::NET_SLOT_SIZE;
use bulkhead_qubeconfig::MAX_DOWNSTREAM;

/// Each qube's netvm as written and resolved, and the channels they make.
pub(crate) struct Links {
    /// Each qube's netvm, by index, when it names a known qube.
    pub netvm: Vec<Option<usize>>,
    /// Whether every netvm is right and there is no cycle.
    pub ok: bool,
    /// The channels between each qube and its netvm.
    pub automatic: Vec<Automatic>,
}

/// Whether qube `q` has devices (or a `devices` key too broken to tell).
fn has_devices(q: &Section) -> bool {
    match q.names("devices") {
        Some((list, _)) => !list.is_empty(),
        None => !q.absent("devices"),
    }
}

/// Reads every `netvm`: a known qube other than itself, no cycles, a netvm that reaches a
/// network, one client per card owner, and at most [`MAX_DOWNSTREAM`] clients per netvm.
pub(crate) fn links(raw: &Raw, text: &str, d: &mut Diagnostics) -> Links {
    let qubes = &raw.qubes.items;
    let names = raw.qubes.item_names();
    let listed: Vec<&str> = names.iter().flatten().copied().collect();
    let known = raw.qubes.known();
    let mut netvm = vec![None; qubes.len()];
    // Qubes whose netvm is given but wrong: where they lead is unknown.
    let mut broken = vec![false; qubes.len()];
    for (i, q) in qubes.iter().enumerate() {
        let Some((target, span)) = q.text("netvm") else {
            broken[i] = !q.absent("netvm");
            continue;
        };
        let key = q.key("netvm");
        if names[i] == Some(target) {
            let message = format!("{} cannot be its own netvm", hints::quoted(target));
            let others: Vec<&str> = listed.iter().copied().filter(|n| *n != target).collect();
            let others = match others.is_empty() {
                true => "there is no other qube".to_string(),
                false => format!("qubes are {}", hints::list(&others)),
            };
            let hint = format!(
                "netvm names the qube this one reaches the network through, e.g. a firewall; \
                 {others}"
            );
            d.push(text, Some(span), key, message, hint);
            broken[i] = true;
            continue;
        }
        match names.iter().position(|n| *n == Some(target)) {
            Some(n) => netvm[i] = Some(n),
            None => {
                if known {
                    let message = format!("unknown netvm {}", hints::quoted(target));
                    let hint = hints::one_of("qubes", target, &listed);
                    d.push(text, Some(span.clone()), key.clone(), message, hint);
                }
                broken[i] = true;
            }
        }
        if let Some(name) = names[i].filter(|n| n.len() + CHANNEL_SUFFIX.len() > NAME_MAX) {
            let channel = channel_name(name);
            let message = format!(
                "the channel to the netvm would be called \"{channel}\", {} bytes; at most \
                 {NAME_MAX} fit",
                channel.len()
            );
            let hint = format!(
                "a qube with a netvm has a name of at most {} bytes; shorten \"{name}\"",
                NAME_MAX - CHANNEL_SUFFIX.len()
            );
            d.push(text, Some(span), key, message, hint);
            broken[i] = true;
        }
    }
    let mut ok = !broken.contains(&true);
    ok &= cycles(raw, &names, &netvm, text, d);
    ok &= reachable(raw, &names, &netvm, &broken, text, d);
    let automatic = automatic(raw, &names, &netvm);
    Links {
        netvm,
        ok,
        automatic,
    }
}

/// Qubes of a cycle named in its diagnostic; a longer one is shortened.
const CYCLE_SHOWN: usize = 8;

/// Reports each netvm cycle once, at the first qube of it; false if there is one.
fn cycles(
    raw: &Raw,
    names: &[Option<&str>],
    netvm: &[Option<usize>],
    text: &str,
    d: &mut Diagnostics,
) -> bool {
    let mut ok = true;
    for cycle in find_cycles(netvm) {
        ok = false;
        let start = cycle[0];
        let name = |i: usize| format!("\"{}\"", names[i].unwrap_or("?"));
        // A long cycle shows its first qubes and its last.
        let shown: Vec<String> = match cycle.len() {
            n if n > CYCLE_SHOWN => cycle[..CYCLE_SHOWN - 1]
                .iter()
                .map(|i| name(*i))
                .chain(["...".to_string(), name(cycle[n - 1]), name(start)])
                .collect(),
            _ => cycle.iter().chain([&start]).map(|i| name(*i)).collect(),
        };
        let q = &raw.qubes.items[start];
        let span = q.text("netvm").map(|(_, s)| s);
        let length = match cycle.len() {
            n if n > CYCLE_SHOWN => format!(" ({n} qubes)"),
            _ => String::new(),
        };
        let message = format!("netvm cycle: {}{length}", shown.join(" -> "));
        let hint = "a chain of netvms must end at a qube that owns a network card (devices = \
                    [...]) and has no netvm; remove netvm from one of these qubes";
        d.push(text, span, q.key("netvm"), message, hint);
    }
    ok
}

/// Every cycle of the netvm graph (each qube has at most one netvm), each once, starting at
/// its lowest index and in the order of that index. Linear: each chain is walked once, and a
/// walk stops at a qube an earlier walk has finished.
fn find_cycles(netvm: &[Option<usize>]) -> Vec<Vec<usize>> {
    /// Not walked yet; on the walk that started at the given qube; finished.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        On(usize),
        Done,
    }
    let mut mark = vec![Mark::New; netvm.len()];
    let mut cycles = Vec::new();
    for start in 0..netvm.len() {
        let mut path = Vec::new();
        let mut at = Some(start);
        while let Some(i) = at.filter(|i| *i < netvm.len()) {
            match mark[i] {
                Mark::Done => break,
                Mark::On(walk) if walk == start => {
                    // Back on this walk: the path from `i` on is a cycle.
                    let from = path.iter().position(|p| *p == i).unwrap_or(0);
                    let mut cycle = path[from..].to_vec();
                    let lowest = (0..cycle.len()).min_by_key(|k| cycle[*k]).unwrap_or(0);
                    cycle.rotate_left(lowest);
                    cycles.push(cycle);
                    break;
                }
                Mark::On(_) => break,
                Mark::New => {
                    mark[i] = Mark::On(start);
                    path.push(i);
                    at = netvm[i];
                }
            }
        }
        for i in path {
            mark[i] = Mark::Done;
        }
    }
    cycles.sort_by_key(|c| c[0]);
    cycles
}

/// Each netvm reaches a network (it has a netvm or devices), a card owner serves one client,
/// and no netvm has more than [`MAX_DOWNSTREAM`] clients. Netvms whose own netvm is
/// `broken` are left alone (where they lead is unknown).
fn reachable(
    raw: &Raw,
    names: &[Option<&str>],
    netvm: &[Option<usize>],
    broken: &[bool],
    text: &str,
    d: &mut Diagnostics,
) -> bool {
    let qubes = &raw.qubes.items;
    let name = |i: usize| names[i].unwrap_or("?");
    let mut ok = true;
    let mut clients: Vec<Vec<usize>> = vec![Vec::new(); qubes.len()];
    for (i, q) in qubes.iter().enumerate() {
        let Some(n) = netvm[i] else {
            continue;
        };
        clients[n].push(i);
        let span = q.text("netvm").map(|(_, s)| s);
        let key = q.key("netvm");
        let bridge = netvm[n].is_none() && !broken[n];
        if bridge && !has_devices(&qubes[n]) {
            // Once per netvm, at its first client.
            if clients[n].len() == 1 {
                let message = format!(
                    "\"{}\" cannot reach any network: it has no netvm and no devices",
                    name(n)
                );
                let hint = format!(
                    "give \"{}\" its network card (devices = [\"pci-id:1af4:1041\"]) or a \
                     netvm of its own, or choose another netvm here",
                    name(n)
                );
                d.push(text, span, key, message, hint);
            }
            ok = false;
        } else if bridge && clients[n].len() == 2 {
            let first = clients[n][0];
            let message = format!(
                "\"{}\" owns the network card and serves one qube, \"{}\" already",
                name(n),
                name(first)
            );
            let hint = format!(
                "the card owner hands its one DHCP address to its one client; put a router \
                 between: netvm = \"{}\" here, if \"{}\" routes (a qube whose netvm is \"{}\", \
                 like sys-firewall)",
                name(first),
                name(first),
                name(n)
            );
            d.push(text, span, key, message, hint);
            ok = false;
        } else if clients[n].len() == MAX_DOWNSTREAM + 1 {
            let message = format!(
                "\"{}\" is the netvm of {} qubes, at most {MAX_DOWNSTREAM} fit",
                name(n),
                MAX_DOWNSTREAM + 1
            );
            let hint = "give some of its clients another netvm";
            d.push(text, span, key, message, hint);
            ok = false;
        }
    }
    ok
}

/// The channel between each qube with a (known) netvm and that netvm.
fn automatic(raw: &Raw, names: &[Option<&str>], netvm: &[Option<usize>]) -> Vec<Automatic> {
    let size = net_channel_size();
    raw.qubes
        .items
        .iter()
        .enumerate()
        .filter_map(|(i, q)| {
            let n = netvm[i]?;
            let name = names[i].filter(|n| n.len() + CHANNEL_SUFFIX.len() <= NAME_MAX)?;
            Some(Automatic {
                channel: Channel {
                    name: channel_name(name),
                    a: n,
                    b: i,
                    size,
                    slot_size: NET_SLOT_SIZE,
                    bulk_size: 0,
                    purpose: PURPOSE.to_string(),
                },
                key: q.key("netvm"),
                span: q.text("netvm").map(|(_, s)| s),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::find_cycles;

    #[test]
    fn finds_each_cycle_once_from_its_lowest_qube() {
        assert!(find_cycles(&[None, Some(0), Some(1)]).is_empty());
        // 3 -> 1 -> 2 -> 1 and 0 -> 4 -> 0 (5 and 6 lead into them).
        let netvm = [
            Some(4),
            Some(2),
            Some(1),
            Some(1),
            Some(0),
            Some(3),
            Some(5),
        ];
        assert_eq!(find_cycles(&netvm), [vec![0, 4], vec![1, 2]]);
        assert_eq!(find_cycles(&[Some(0)]), [vec![0]]);
        // A ring of 100,000 qubes, walked once.
        let n = 100_000;
        let ring: Vec<Option<usize>> = (0..n).map(|i| Some((i + 1) % n)).collect();
        let found = find_cycles(&ring);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].len(), n);
        assert_eq!(found[0][0], 0);
    }
}
