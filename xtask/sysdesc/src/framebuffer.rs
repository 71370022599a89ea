//! The firmware framebuffer: `framebuffer = true` on the one unikernel qube (the gui qube)
//! that draws on whatever display the firmware or GRUB set up, when the machine has no
//! display device that qube drives through PCI. Never a Linux qube's (reported by
//! `linux::foreign_keys`), never two qubes'.

use super::diagnostics::Diagnostics;
use super::schema::Raw;

/// The index of the qube given the framebuffer (`Some(None)`: none), when the rules hold.
pub(super) fn check(raw: &Raw, text: &str, d: &mut Diagnostics) -> Option<Option<usize>> {
    let mut ok = true;
    let mut owner: Option<usize> = None;
    for (i, q) in raw.qubes.items.iter().enumerate() {
        let Some((wanted, span)) = q.flag("framebuffer") else {
            ok &= q.absent("framebuffer");
            continue;
        };
        if !wanted {
            continue;
        }
        if super::linux::is_linux(q) {
            ok = false;
            continue;
        }
        if let Some(first) = owner {
            let message = format!(
                "the framebuffer is given to {} already",
                raw.qubes.items[first].path
            );
            let hint = "one qube draws on the firmware's framebuffer: keep framebuffer = true \
                on the gui qube only";
            d.push(text, Some(span), q.key("framebuffer"), message, hint);
            ok = false;
            continue;
        }
        owner = Some(i);
    }
    ok.then_some(owner)
}
