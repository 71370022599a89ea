//! The GRUB ISO boots with UEFI: QEMU with OVMF as its firmware boots the ISO's EFI image
//! (GRUB for x86_64-efi), which loads the hypervisor through multiboot2; once from a CD-ROM,
//! once written as is to a USB stick (the ISO is a hybrid image with a GPT), as the README
//! tells people to do on real machines. The gui qube drives the same display OVMF's GOP drew
//! on (QEMU's std VGA, PCI 1234:1111, assigned to it like any device): the screenshot after
//! the boot shows its desktop (its mode, its panel).

use super::{Scenario, boots, expect};
use crate::qemu::{self, Control, HvEvent, Media, Rect, qmp};
use crate::{deps, iso};
use anyhow::{Context, Result, bail};
use bulkhead_gui_compose::desktop::PANEL_BACKGROUND;

pub const UEFI_ISO: Scenario = Scenario {
    name: "boot-uefi-iso",
    about: "QEMU with OVMF (UEFI) boots the GRUB ISO's EFI image to all qubes ready",
    run: || boot_uefi(false),
};

pub const UEFI_USB: Scenario = Scenario {
    name: "boot-uefi-usb",
    about: "QEMU with OVMF boots the ISO written to a USB stick (usb-storage) to all qubes ready",
    run: || boot_uefi(true),
};

fn boot_uefi(usb: bool) -> Result<String> {
    deps::ensure(deps::ISO)?;
    deps::ensure(deps::OVMF)?;
    let a = boots::assemble("systems/tests/services.toml")?;
    // An ISO of its own, so no other run can rewrite it under QEMU.
    let path = crate::bundle::out_dir().join(format!("uefi-{}.iso", std::process::id()));
    iso::make(&a, &path)?;
    let log = if usb {
        "boot-uefi-usb"
    } else {
        "boot-uefi-iso"
    };
    let mut opts = boots::options(&a, "max", 120, log);
    opts.media = Media::Iso(path.clone());
    opts.extra_args = vec!["-bios".into(), deps::OVMF_FD.into()];
    if usb {
        // The same image as a USB disk, first in the boot order (the CD-ROM stays, second).
        let drive = format!(
            "file={},format=raw,if=none,id=stick,snapshot=on",
            path.display()
        );
        opts.extra_args.extend(
            [
                "-drive",
                &drive,
                "-device",
                "qemu-xhci",
                "-device",
                "usb-storage,drive=stick,bootindex=0",
            ]
            .map(String::from),
        );
    }
    let socket = qmp::socket_path(log);
    opts.qmp_socket = Some(socket.clone());
    let png = crate::bundle::out_dir()
        .join("screens")
        .join(format!("{log}.png"));
    std::fs::create_dir_all(png.parent().context("screens folder")?)?;
    let mut shot = None;
    let out = qemu::boot(&opts, |e| {
        let ready = e.line.text.contains("qubes ready:");
        if ready {
            shot = Some(qmp::save_screenshot(&socket, &png));
        }
        Control::stop_if(ready || matches!(e.hv, Some(HvEvent::Panic(_))))
    });
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&socket);
    let out = out?;
    if let Some(p) = &out.panic {
        bail!("hypervisor panic: {p}");
    }
    // OVMF's boot manager writes what it boots to the serial port too: proof that UEFI booted
    // the medium under test.
    let medium = if usb { "USB HARDDRIVE" } else { "DVD-ROM" };
    expect(
        out.lines
            .iter()
            .any(|l| l.contains("BdsDxe: starting") && l.contains(medium)),
        || format!("no `BdsDxe: starting ... {medium}` line from OVMF"),
    )?;
    let (exits, ms) = boots::check_all_ready(&out, &a.qube_names(), "boot: multiboot2")?;
    // The gui qube says ready after its first frame: its desktop is on the screen.
    let screen = shot.context("no screenshot")??;
    let size = (screen.width(), screen.height());
    let c = PANEL_BACKGROUND;
    let panel = screen.count_pixels(
        Rect::new(0, 0, 1024, 24),
        [(c >> 16) as u8, (c >> 8) as u8, c as u8],
    );
    expect(size == (1024, 768) && panel > 1024 * 24 * 9 / 10, || {
        format!(
            "not the gui qube's desktop: {size:?}, {panel} panel pixels (see {})",
            png.display()
        )
    })?;
    Ok(format!(
        "all {} qubes ready: {exits} VM exits, {ms} ms guest time, {:.1} s wall; the gui qube's desktop on OVMF's display",
        a.qube_names().len(),
        out.wall.as_secs_f64()
    ))
}
