//! One message from a client, checked and applied to the desktop. Everything here comes
//! from a qube that may be hostile.

use crate::desktop::Desktop;
use crate::geom::Rect;
use crate::title::Title;
use bulkhead_abi::gui::{GUI_VERSION, ToGui};
use bulkhead_abi::proto::BulkRef;

/// What the caller must do after a message, beyond what the desktop did.
#[derive(Debug, PartialEq, Eq)]
pub enum Needs {
    /// Nothing more.
    Nothing,
    /// The client speaks another protocol version: refuse the channel.
    WrongVersion(u16),
    /// The client answered a clipboard request: copy `Some(buffer)` out of its pool (at most
    /// `CLIPBOARD_MAX` bytes), hand it to the clipboard, and return it.
    Clipboard(Option<BulkRef>),
    /// The client gave back a buffer the gui qube lent it: reclaim it.
    Reclaim(BulkRef),
}

/// Applies `msg` from `client` to the desktop.
pub fn handle(d: &mut Desktop, client: usize, msg: &ToGui<'_>) -> Needs {
    match *msg {
        ToGui::Hello { version } if version != GUI_VERSION => Needs::WrongVersion(version),
        ToGui::Hello { .. } => Needs::Nothing,
        ToGui::Create {
            window,
            width,
            height,
            surface,
        } => {
            d.create(client, window, width, height, surface);
            Needs::Nothing
        }
        ToGui::Title { window, title } => {
            d.set_title(client, window, Title::from_bytes(title));
            Needs::Nothing
        }
        ToGui::Damage { window, rect } => {
            let r = Rect::new(
                i32::from(rect.x),
                i32::from(rect.y),
                i32::from(rect.w),
                i32::from(rect.h),
            );
            d.damage(client, window, r);
            Needs::Nothing
        }
        ToGui::Destroy { window } => {
            d.destroy(client, window);
            Needs::Nothing
        }
        ToGui::Clipboard(r) => Needs::Clipboard(r),
        ToGui::Returned(r) => Needs::Reclaim(r),
    }
}
