//! The GRUB ISO boots with UEFI: QEMU with OVMF as its firmware boots the ISO's EFI image
//! (GRUB for x86_64-efi), which loads the hypervisor through multiboot2; once from a CD-ROM,
//! once written as is to a USB stick (the ISO is a hybrid image with a GPT), as the README
//! tells people to do on real machines. The gui qube drives the same display OVMF's GOP drew
//! on (QEMU's std VGA, PCI 1234:1111, assigned to it like any device): the screenshot after
//! the boot shows its desktop (its mode, its panel). A third boot gives the gui qube no
//! display device but the firmware's framebuffer (`systems/tests/uefi-framebuffer.toml`):
//! its desktop appears at the mode GRUB left (the real-machine display path).

use super::{Scenario, boots, expect};
use crate::qemu::{self, Control, HvEvent, Media, Rect, qmp};
use crate::{deps, iso};
use anyhow::{Context, Result, bail};
use bulkhead_gui_compose::desktop::PANEL_BACKGROUND;

pub const UEFI_ISO: Scenario = Scenario {
    name: "boot-uefi-iso",
    about: "QEMU with OVMF (UEFI) boots the GRUB ISO's EFI image to all qubes ready",
    run: || boot_uefi(Medium::Cd),
};

pub const UEFI_USB: Scenario = Scenario {
    name: "boot-uefi-usb",
    about: "QEMU with OVMF boots the ISO written to a USB stick (usb-storage) to all qubes ready",
    run: || boot_uefi(Medium::Usb),
};

pub const UEFI_FRAMEBUFFER: Scenario = Scenario {
    name: "boot-uefi-framebuffer",
    about: "QEMU with OVMF boots the GRUB ISO; the gui qube draws on the firmware's framebuffer (no PCI display)",
    run: || boot_uefi(Medium::Framebuffer),
};

/// What a UEFI boot tries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Medium {
    /// The ISO as a CD-ROM; the gui qube drives the std VGA.
    Cd,
    /// The ISO as a USB stick; the gui qube drives the std VGA.
    Usb,
    /// The ISO as a CD-ROM; the gui qube draws on the firmware's framebuffer.
    Framebuffer,
}

fn boot_uefi(medium: Medium) -> Result<String> {
    let usb = medium == Medium::Usb;
    let fb = medium == Medium::Framebuffer;
    deps::ensure(deps::ISO)?;
    deps::ensure(deps::OVMF)?;
    let a = boots::assemble(if fb {
        "systems/tests/uefi-framebuffer.toml"
    } else {
        "systems/tests/services.toml"
    })?;
    // An ISO of its own, so no other run can rewrite it under QEMU.
    let path = crate::bundle::out_dir().join(format!("uefi-{}.iso", std::process::id()));
    iso::make(&a, &path)?;
    let log = match medium {
        Medium::Cd => "boot-uefi-iso",
        Medium::Usb => "boot-uefi-usb",
        Medium::Framebuffer => "boot-uefi-framebuffer",
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
    let panel = screen.count_pixels(Rect::new(0, 0, size.0, 24), super::gui::rgb(c));
    // The bochs path sets 1024x768 itself; on the firmware's framebuffer the desktop takes
    // whatever mode GRUB and OVMF left, and the gui qube must say it draws there.
    let mode_ok = fb || size == (1024, 768);
    expect(mode_ok && panel > size.0 as usize * 24 * 9 / 10, || {
        format!(
            "not the gui qube's desktop: {size:?}, {panel} panel pixels (see {})",
            png.display()
        )
    })?;
    if fb {
        let said = |words: &[&str]| {
            out.lines
                .iter()
                .any(|l| words.iter().all(|w| l.contains(w)))
        };
        expect(said(&["boot: framebuffer"]), || {
            "the hypervisor found no framebuffer tag".to_string()
        })?;
        expect(
            said(&["qube gui: framebuffer", "mapped", "(write-combining)"]),
            || "the framebuffer was not mapped write-combining into the gui qube".to_string(),
        )?;
        let mode = format!(
            "gui: display {}x{} on the firmware framebuffer",
            size.0, size.1
        );
        expect(said(&[&mode]), || format!("no `{mode}` line"))?;
    }
    let shown = if fb {
        format!("on the firmware's framebuffer at {}x{}", size.0, size.1)
    } else {
        "on OVMF's display".to_string()
    };
    Ok(format!(
        "all {} qubes ready: {exits} VM exits, {ms} ms guest time, {:.1} s wall; the gui qube's desktop {shown}",
        a.qube_names().len(),
        out.wall.as_secs_f64()
    ))
}
