//! Qubes' label colours. The hypervisor prefixes every console line of a qube with its name in
//! this colour; the GUI qube (later) draws window borders in it.

/// A qube's trust label, as in Qubes OS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "proto", derive(serde::Serialize, serde::Deserialize))]
#[repr(u8)]
pub enum Label {
    /// Untrusted.
    Red = 0,
    /// Orange.
    Orange = 1,
    /// Yellow.
    Yellow = 2,
    /// Green.
    Green = 3,
    /// Gray (system qubes by default).
    Gray = 4,
    /// Blue.
    Blue = 5,
    /// Purple.
    Purple = 6,
    /// Black (most trusted).
    Black = 7,
}

impl Label {
    /// Every label, in Qubes' order.
    pub const ALL: [Label; 8] = [
        Label::Red,
        Label::Orange,
        Label::Yellow,
        Label::Green,
        Label::Gray,
        Label::Blue,
        Label::Purple,
        Label::Black,
    ];

    /// The lower-case name used in system descriptions.
    pub const fn name(self) -> &'static str {
        match self {
            Label::Red => "red",
            Label::Orange => "orange",
            Label::Yellow => "yellow",
            Label::Green => "green",
            Label::Gray => "gray",
            Label::Blue => "blue",
            Label::Purple => "purple",
            Label::Black => "black",
        }
    }

    /// Parses a lower-case label name.
    pub fn from_name(name: &str) -> Option<Label> {
        Label::ALL.into_iter().find(|l| l.name() == name)
    }

    /// The ANSI SGR sequence that selects this colour on a terminal (256-colour palette, so
    /// orange and gray are distinct; black is drawn as white-on-black so it stays visible).
    pub const fn ansi(self) -> &'static str {
        match self {
            Label::Red => "\x1b[1;38;5;196m",
            Label::Orange => "\x1b[1;38;5;208m",
            Label::Yellow => "\x1b[1;38;5;226m",
            Label::Green => "\x1b[1;38;5;46m",
            Label::Gray => "\x1b[1;38;5;250m",
            Label::Blue => "\x1b[1;38;5;33m",
            Label::Purple => "\x1b[1;38;5;135m",
            Label::Black => "\x1b[1;97;40m",
        }
    }

    /// The colour the gui qube draws this label's window borders and title bars in, as
    /// `0x00RRGGBB` (Qubes' Tango-palette label colours; black is a dark gray so that the
    /// border stays visible on a black desktop).
    pub const fn rgb(self) -> u32 {
        match self {
            Label::Red => 0x00CC_0000,
            Label::Orange => 0x00F5_7900,
            Label::Yellow => 0x00ED_D400,
            Label::Green => 0x0073_D216,
            Label::Gray => 0x0055_5753,
            Label::Blue => 0x0034_65A4,
            Label::Purple => 0x0075_507B,
            Label::Black => 0x0020_2020,
        }
    }

    /// Decodes the `repr(u8)` value.
    pub const fn from_u8(v: u8) -> Option<Label> {
        match v {
            0 => Some(Label::Red),
            1 => Some(Label::Orange),
            2 => Some(Label::Yellow),
            3 => Some(Label::Green),
            4 => Some(Label::Gray),
            5 => Some(Label::Blue),
            6 => Some(Label::Purple),
            7 => Some(Label::Black),
            _ => None,
        }
    }
}

/// The SGR sequence that resets the colour.
pub const ANSI_RESET: &str = "\x1b[0m";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for l in Label::ALL {
            assert_eq!(Label::from_name(l.name()), Some(l));
            assert_eq!(Label::from_u8(l as u8), Some(l));
        }
        assert_eq!(Label::from_name("pink"), None);
        assert_eq!(Label::from_u8(8), None);
    }

    #[test]
    fn label_colours_are_distinct() {
        for a in Label::ALL {
            for b in Label::ALL {
                assert_eq!(a == b, a.rgb() == b.rgb(), "{a:?} {b:?}");
            }
        }
    }
}
