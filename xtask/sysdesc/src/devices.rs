//! Device assignment: each `[[qube]]`'s `devices = [...]` (PCI functions by address or by
//! vendor and device ID), named at most once in the whole system, and `[system] iommu`,
//! which says whether assigned devices need an IOMMU.

use super::diagnostics::Diagnostics;
use super::hints;
use super::schema::{Raw, Section};
use bulkhead_abi::manifest::{IommuPolicy, MAX_DEVICES, PciSelect};

/// How to find device names, for every device hint.
pub(super) const FIND_DEVICES: &str = "find them with `lspci -nn` on the target machine (the \
    address starts each line, [vendor:device] ends it); under QEMU, `cargo xtask run` adds one \
    virtio-net card, pci-id:1af4:1041, and for a system with private volumes a virtio-blk \
    disk, pci-id:1af4:1042";

/// The two `iommu` values, as written.
pub(super) const IOMMU_REQUIRED: &str = "required";
/// Long on purpose: nobody should write it without reading it.
pub(super) const IOMMU_ACCEPT_RISK: &str = "accept-risk-dma-can-read-all-memory";

/// A device as a description writes it: `pci:00:03.0`, `pci:0000:00:03.0`,
/// `pci-id:1af4:1041` or `pci-id:8086:100e#1`.
pub(super) fn show(select: &PciSelect) -> String {
    match *select {
        PciSelect::Address {
            segment: 0,
            bus,
            device,
            function,
        } => format!("pci:{bus:02x}:{device:02x}.{function}"),
        PciSelect::Address {
            segment,
            bus,
            device,
            function,
        } => format!("pci:{segment:04x}:{bus:02x}:{device:02x}.{function}"),
        PciSelect::Id {
            vendor,
            device,
            index: 0,
        } => format!("pci-id:{vendor:04x}:{device:04x}"),
        PciSelect::Id {
            vendor,
            device,
            index,
        } => format!("pci-id:{vendor:04x}:{device:04x}#{index}"),
    }
}

/// `1..=max` hexadecimal digits as a number.
fn hex(text: &str, max: usize) -> Option<u32> {
    let ok = !text.is_empty() && text.len() <= max && text.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| u32::from_str_radix(text, 16).ok()).flatten()
}

/// `BB:DD.F` or `SSSS:BB:DD.F`, as `lspci -D` prints it.
fn address(text: &str) -> Result<PciSelect, String> {
    let (rest, function) = text
        .rsplit_once('.')
        .ok_or("an address ends with .function, e.g. pci:00:03.0")?;
    let parts: Vec<&str> = rest.split(':').collect();
    let (segment, bus, device) = match parts.as_slice() {
        [bus, device] => ("0", *bus, *device),
        [segment, bus, device] => (*segment, *bus, *device),
        _ => return Err("an address is bus:device.function, e.g. pci:00:03.0".into()),
    };
    let segment = hex(segment, 4).ok_or("the segment is 1 to 4 hexadecimal digits")?;
    let bus = hex(bus, 2).ok_or("the bus is 1 or 2 hexadecimal digits")?;
    let device = hex(device, 2)
        .filter(|d| *d < 32)
        .ok_or("the device is a hexadecimal number from 00 to 1f")?;
    let function = hex(function, 1)
        .filter(|f| *f < 8)
        .ok_or("the function is a digit from 0 to 7")?;
    Ok(PciSelect::Address {
        segment: segment as u16,
        bus: bus as u8,
        device: device as u8,
        function: function as u8,
    })
}

/// `VVVV:DDDD` or `VVVV:DDDD#N`, as `lspci -nn` prints the IDs.
fn id(text: &str) -> Result<PciSelect, String> {
    let (ids, index) = match text.split_once('#') {
        Some((ids, index)) => {
            let digits = !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit());
            let index = digits.then(|| index.parse::<u8>().ok()).flatten().ok_or(
                "the index after # is a number from 0 to 255 (0 is the first such device)",
            )?;
            (ids, index)
        }
        None => (text, 0),
    };
    let (vendor, device) = ids
        .split_once(':')
        .ok_or("IDs are vendor:device, e.g. pci-id:1af4:1041")?;
    let vendor = hex(vendor, 4).ok_or("the vendor ID is 4 hexadecimal digits")?;
    let device = hex(device, 4).ok_or("the device ID is 4 hexadecimal digits")?;
    Ok(PciSelect::Id {
        vendor: vendor as u16,
        device: device as u16,
        index,
    })
}

/// The device `text` names, or what is wrong with it and a fix.
pub(super) fn parse(text: &str) -> Result<PciSelect, (String, String)> {
    let problem = |why: String| {
        let message = format!("{} is not a device: {why}", hints::quoted(text));
        let hint = format!(
            "write pci:BUS:DEVICE.FUNCTION (e.g. \"pci:00:03.0\", optionally with the segment \
             first: \"pci:0000:00:03.0\") or pci-id:VENDOR:DEVICE (e.g. \"pci-id:1af4:1041\", \
             \"pci-id:8086:100e#1\" for the second such card); {FIND_DEVICES}"
        );
        (message, hint)
    };
    let lower = text.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("pci-id:") {
        return id(rest).map_err(problem);
    }
    if let Some(rest) = lower.strip_prefix("pci:") {
        return address(rest).map_err(problem);
    }
    // The forms lspci prints, without the prefix that says which one it is.
    let why = if address(&lower).is_ok() {
        format!("add the prefix: \"pci:{lower}\"")
    } else if id(&lower).is_ok() {
        format!("add the prefix: \"pci-id:{lower}\"")
    } else {
        "it starts with pci: (an address) or pci-id: (vendor and device IDs)".to_string()
    };
    Err(problem(why))
}

/// Every qube's devices, as (qube index, device) in qube order, when all are right and no
/// device is named twice.
pub(super) fn check(raw: &Raw, text: &str, d: &mut Diagnostics) -> Option<Vec<(usize, PciSelect)>> {
    let mut ok = true;
    // Each device with the qube and the table that named it first.
    let mut seen: Vec<(PciSelect, usize, &Section)> = Vec::new();
    for (i, q) in raw.qubes.items.iter().enumerate() {
        let Some((list, _)) = q.names("devices") else {
            ok &= q.absent("devices");
            continue;
        };
        for (item, span) in list {
            let select = match parse(item.trim()) {
                Ok(s) => s,
                Err((message, hint)) => {
                    d.push(text, Some(span.clone()), q.key("devices"), message, hint);
                    ok = false;
                    continue;
                }
            };
            if let Some((_, j, first)) = seen.iter().find(|(s, ..)| *s == select) {
                let whose = if *j == i {
                    "this qube already names it".to_string()
                } else {
                    format!("{} already has it", first.path)
                };
                let shown = show(&select);
                let message = if item.trim().eq_ignore_ascii_case(&shown) {
                    format!("{shown} is named twice")
                } else {
                    format!(
                        "{shown} is named twice (written {} here)",
                        hints::quoted(item)
                    )
                };
                let hint = format!(
                    "a device belongs to one qube and is named once ({whose}); remove one. \
                     Several identical cards are told apart by address or by index, e.g. \
                     \"pci-id:8086:100e#1\" for the second; {FIND_DEVICES}"
                );
                d.push(text, Some(span.clone()), q.key("devices"), message, hint);
                ok = false;
                continue;
            }
            seen.push((select, i, q));
        }
    }
    if seen.len() > MAX_DEVICES {
        let (select, _, q) = &seen[MAX_DEVICES];
        let span = q
            .names("devices")
            .and_then(|(list, _)| {
                list.iter()
                    .find(|(t, _)| parse(t.trim()).ok() == Some(*select))
                    .map(|(_, s)| s.clone())
            })
            .or(q.span.clone());
        let message = format!(
            "{} devices are assigned, at most {MAX_DEVICES} fit",
            seen.len()
        );
        let hint = format!("assign {} device(s) fewer", seen.len() - MAX_DEVICES);
        d.push(text, span, q.key("devices"), message, hint);
        return None;
    }
    ok.then(|| seen.into_iter().map(|(s, i, _)| (i, s)).collect())
}

/// `[system] iommu`: `required` when absent.
pub(super) fn iommu(sys: &Section, text: &str, d: &mut Diagnostics) -> Option<IommuPolicy> {
    let Some((value, span)) = sys.text("iommu") else {
        return sys.absent("iommu").then_some(IommuPolicy::Required);
    };
    match value {
        IOMMU_REQUIRED => Some(IommuPolicy::Required),
        IOMMU_ACCEPT_RISK => Some(IommuPolicy::AcceptRisk),
        other => {
            let message = format!("unknown iommu policy {}", hints::quoted(other));
            let hint = format!(
                "iommu is \"{IOMMU_REQUIRED}\" (the default: devices are assigned only behind \
                 an IOMMU) or \"{IOMMU_ACCEPT_RISK}\" (a machine without an IOMMU may assign \
                 them; an assigned device can then read and write all memory)"
            );
            d.fail(text, Some(span), sys.key("iommu"), message, hint)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(segment: u16, bus: u8, device: u8, function: u8) -> PciSelect {
        PciSelect::Address {
            segment,
            bus,
            device,
            function,
        }
    }

    #[test]
    fn parses_addresses_and_ids() {
        assert_eq!(parse("pci:00:03.0"), Ok(address(0, 0, 3, 0)));
        assert_eq!(parse("pci:0001:1f:1f.7"), Ok(address(1, 0x1f, 0x1f, 7)));
        assert_eq!(parse("PCI:0:3.0"), Ok(address(0, 0, 3, 0)));
        assert_eq!(
            parse("pci-id:1af4:1041"),
            Ok(PciSelect::Id {
                vendor: 0x1af4,
                device: 0x1041,
                index: 0
            })
        );
        assert_eq!(
            parse("pci-id:8086:100E#1"),
            Ok(PciSelect::Id {
                vendor: 0x8086,
                device: 0x100e,
                index: 1
            })
        );
        for text in [
            "pci:00:03.0",
            "pci:0001:02:1f.7",
            "pci-id:1af4:1041",
            "pci-id:8086:100e#2",
        ] {
            assert_eq!(show(&parse(text).unwrap()), text);
        }
    }

    #[test]
    fn refuses_bad_devices_with_the_reason() {
        let why = |text: &str| parse(text).unwrap_err().0;
        assert!(why("pci:00:20.0").contains("00 to 1f"));
        assert!(why("pci:00:03.8").contains("digit from 0 to 7"));
        assert!(why("pci:100:03.0").contains("bus"));
        assert!(why("pci:00:03").contains("ends with .function"));
        assert!(why("pci:1:2:3:4.0").contains("bus:device.function"));
        assert!(why("pci-id:1af4").contains("vendor:device"));
        assert!(why("pci-id:1af4:10410").contains("device ID"));
        assert!(why("pci-id:1af4:1041#256").contains("0 to 255"));
        assert!(why("pci-id:1af4:1041#").contains("0 to 255"));
        assert!(why("00:03.0").contains("add the prefix: \"pci:00:03.0\""));
        assert!(why("1af4:1041").contains("add the prefix: \"pci-id:1af4:1041\""));
        assert!(why("eth0").contains("starts with pci:"));
        let (_, hint) = parse("usb:1-2").unwrap_err();
        assert!(hint.contains("lspci -nn") && hint.contains("pci-id:1af4:1041"));
    }
}
