//! Window titles as the gui qube shows them: what a client sends, made safe.

use bulkhead_abi::gui::TITLE_MAX;
use heapless::String;

/// A title: printable ASCII only (anything else, control characters included, becomes `?`),
/// at most [`TITLE_MAX`] bytes. Whatever it says, it is drawn after the qube's name in
/// brackets, which comes from the system description: `[work] [banking]` cannot pass for
/// the `banking` qube's window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Title(String<TITLE_MAX>);

impl Title {
    /// The title for the bytes a client sent.
    pub fn from_bytes(bytes: &[u8]) -> Title {
        let mut s = String::new();
        for &b in bytes.iter().take(TITLE_MAX) {
            let c = if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '?'
            };
            // Cannot fail: at most TITLE_MAX one-byte characters.
            let _ = s.push(c);
        }
        Title(s)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn control_characters_and_length() {
        assert_eq!(Title::from_bytes(b"a\x1b[2Jb\n").as_str(), "a?[2Jb?");
        assert_eq!(Title::from_bytes(&[b'x'; 300]).as_str().len(), TITLE_MAX);
        assert_eq!(Title::from_bytes("é".as_bytes()).as_str(), "??");
    }

    proptest! {
        #[test]
        fn any_bytes_give_printable_ascii(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let t = Title::from_bytes(&bytes);
            prop_assert!(t.as_str().len() <= TITLE_MAX);
            prop_assert!(t.as_str().bytes().all(|b| b.is_ascii_graphic() || b == b' '));
        }
    }
}
