use super::grid::{Colour, Grid};
use super::keys::{self, KeyState};
use super::pty::{PtySpawner, Spawner};
use super::render::{self, CELL_H, CELL_W, Renderer, View};
use super::select::{self, Mouse, Selection};
use super::vt::{Screen, Terminal};
use bulkhead_abi::gui::modifiers::{ALT, CTRL, SHIFT};
use proptest::prelude::*;
use std::time::{Duration, Instant};

fn term(cols: usize, rows: usize, bytes: &[u8]) -> Terminal {
    let mut t = Terminal::new(cols, rows);
    t.feed(bytes);
    t
}

fn text(s: &Screen, y: usize) -> String {
    s.grid().row_text(y, 0, usize::MAX)
}

#[test]
fn prints_wraps_and_scrolls() {
    let t = term(5, 3, b"abcdefg\r\nxy");
    let s = &t.screen;
    assert_eq!(text(s, 0), "abcde");
    assert_eq!(text(s, 1), "fg");
    assert_eq!(text(s, 2), "xy");
    // The line feed at the bottom scrolls; `z` lands below `xy`, column 2 (no CR).
    let t = term(5, 3, b"abcdefg\r\nxy\nz");
    assert_eq!(
        (text(&t.screen, 0), text(&t.screen, 2)),
        ("fg".into(), "  z".into())
    );
    let t = term(5, 3, b"1\r\n2\r\n3\r\n4");
    assert_eq!(
        (text(&t.screen, 0), text(&t.screen, 2)),
        ("2".into(), "4".into())
    );
    assert_eq!(t.screen.cursor(), (1, 2));
    // The last column fills without wrapping until the next character.
    let t = term(5, 3, b"abcde");
    assert_eq!(t.screen.cursor(), (4, 0));
    let t = term(5, 3, b"\x1b[?7labcdefg");
    assert_eq!(text(&t.screen, 0), "abcdg");
}

#[test]
fn cursor_moves_and_tabs() {
    let s = term(20, 10, b"\x1b[5;8H").screen;
    assert_eq!(s.cursor(), (7, 4));
    let s = term(20, 10, b"\x1b[5;8H\x1b[2A\x1b[3D\x1b[10C\x1b[B").screen;
    assert_eq!(s.cursor(), (14, 3));
    let s = term(20, 10, b"\x1b[99;99H").screen;
    assert_eq!(s.cursor(), (19, 9));
    let s = term(20, 10, b"\x1b[3G\x1b[7d").screen;
    assert_eq!(s.cursor(), (2, 6));
    let s = term(20, 10, b"ab\tc\t\t\td\x08\x08").screen;
    assert_eq!(text(&s, 0), "ab      c          d");
    assert_eq!(s.cursor(), (17, 0));
    let s = term(20, 10, b"abc\x1b7\x1b[5;5Hx\x1b8y").screen;
    assert_eq!(text(&s, 0), "abcy");
}

#[test]
fn erases() {
    let mut t = term(6, 3, b"aaaaaa\r\nbbbbbb\r\ncccccc\x1b[2;3H\x1b[K");
    assert_eq!(text(&t.screen, 1), "bb");
    t.feed(b"\x1b[1K");
    assert_eq!(text(&t.screen, 1), "");
    t.feed(b"\x1b[J");
    assert_eq!(
        (text(&t.screen, 0), text(&t.screen, 2)),
        ("aaaaaa".into(), "".into())
    );
    t.feed(b"\x1b[1;4H\x1b[1J");
    assert_eq!(text(&t.screen, 0), "    aa");
    t.feed(b"\x1b[2J");
    assert_eq!(text(&t.screen, 0), "");
    let t = term(6, 1, b"abcdef\x1b[1;2H\x1b[2X");
    assert_eq!(text(&t.screen, 0), "a  def");
}

#[test]
fn erasing_uses_the_background_colour() {
    let t = term(4, 2, b"\x1b[44m\x1b[2J\x1b[0m");
    assert_eq!(t.screen.grid().cell(3, 1).style.bg, Colour::Indexed(4));
    assert_eq!(t.screen.style().bg, Colour::Default);
}

#[test]
fn sgr_colours_and_attributes() {
    let t = term(10, 1, b"\x1b[1;31ma\x1b[0;7mb\x1b[38;5;208;48;5;17mc\x1b[38;2;1;2;3md\x1b[38:5:99me\x1b[92;103mf\x1b[mg");
    let g = t.screen.grid();
    let c = |x| g.cell(x, 0).style;
    assert!(c(0).bold && c(0).fg == Colour::Indexed(1));
    assert!(c(1).inverse && !c(1).bold && c(1).fg == Colour::Default);
    assert_eq!(
        (c(2).fg, c(2).bg),
        (Colour::Indexed(208), Colour::Indexed(17))
    );
    assert_eq!(c(3).fg, Colour::Rgb(0x010203));
    assert_eq!(c(4).fg, Colour::Indexed(99));
    assert_eq!(
        (c(5).fg, c(5).bg),
        (Colour::Indexed(10), Colour::Indexed(11))
    );
    assert_eq!(c(6), Default::default());
    // Bold brightens the dark ANSI colours; inverse swaps.
    assert_eq!(render::colours(&c(0)).0, 0xff5555);
    assert_eq!(
        render::colours(&c(1)),
        (render::DEFAULT_BG, render::DEFAULT_FG)
    );
    assert_eq!(render::indexed(16), 0);
    assert_eq!(render::indexed(231), 0xffffff);
    assert_eq!(render::indexed(232), 0x080808);
}

#[test]
fn ls_color_output() {
    // What `ls --color` writes for a directory, an executable and a plain file.
    let t = term(
        40,
        3,
        b"\x1b[1;34mbin\x1b[m  \x1b[1;32mrun.sh\x1b[m  notes\r\n",
    );
    let g = t.screen.grid();
    assert_eq!(text(&t.screen, 0), "bin  run.sh  notes");
    assert_eq!(g.cell(0, 0).style.fg, Colour::Indexed(4));
    assert!(g.cell(5, 0).style.bold && g.cell(5, 0).style.fg == Colour::Indexed(2));
    assert_eq!(g.cell(13, 0).style, Default::default());
    assert_eq!(t.screen.cursor(), (0, 1));
}

#[test]
fn insert_and_delete_lines_and_characters() {
    let rows = b"0\r\n1\r\n2\r\n3\r\n4";
    let mut t = term(4, 5, rows);
    t.feed(b"\x1b[2;1H\x1b[2L");
    let all = |t: &Terminal| {
        (0..5)
            .map(|y| text(&t.screen, y))
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(all(&t), "0,,,1,2");
    t.feed(b"\x1b[M");
    assert_eq!(all(&t), "0,,1,2,");
    // Inside a scrolling region (rows 2..4): lines scroll only there.
    let mut t = term(4, 5, rows);
    t.feed(b"\x1b[2;4r\x1b[4;1H\n\n");
    assert_eq!(all(&t), "0,3,,,4");
    assert_eq!(t.screen.region(), (1, 4));
    t.feed(b"\x1b[2;1H\x1bM");
    assert_eq!(all(&t), "0,,3,,4");
    let mut t = term(6, 1, b"abcdef\x1b[1;2H\x1b[2@");
    assert_eq!(text(&t.screen, 0), "a  bcd");
    t.feed(b"\x1b[3P");
    assert_eq!(text(&t.screen, 0), "acd");
    let t = term(6, 1, b"abc\x1b[1;1H\x1b[4hX");
    assert_eq!(text(&t.screen, 0), "Xabc");
}

#[test]
fn reports_and_modes() {
    let mut t = term(10, 5, b"\x1b[3;4H\x1b[6n\x1b[5n\x1b[c");
    assert_eq!(t.screen.take_replies(), b"\x1b[3;4R\x1b[0n\x1b[?6c");
    assert!(t.screen.take_replies().is_empty());
    t.feed(b"\x1b[?1h\x1b[?25l\x1b[?2004h");
    let m = t.screen.modes;
    assert!(m.app_cursor && !m.cursor_visible && m.bracketed_paste);
    // The alternate screen keeps the main one.
    t.feed(b"\x1b[Hmain\x1b[?1049h\x1b[Halt");
    assert_eq!(text(&t.screen, 0), "alt");
    t.feed(b"\x1b[?1049l");
    assert_eq!(text(&t.screen, 0), "main");
    t.feed(b"\x1bc");
    assert_eq!((text(&t.screen, 0), t.screen.cursor()), ("".into(), (0, 0)));
    assert!(t.screen.modes.cursor_visible);
}

#[test]
fn utf8_and_split_sequences() {
    let mut t = Terminal::new(10, 2);
    let bytes = "é─x\u{4e2d}".as_bytes();
    for b in bytes {
        t.feed(&[*b]);
    }
    t.feed(b"\x1b[");
    t.feed(b"31mr");
    t.feed(&[0xff, b'z']);
    let g = t.screen.grid();
    let chars: String = g.row(0).iter().map(|c| c.ch).collect();
    assert!(chars.starts_with("é─x中r"), "{chars}");
    assert_eq!(g.cell(4, 0).style.fg, Colour::Indexed(1));
    // Invalid UTF-8 prints the replacement character.
    assert_eq!(g.cell(5, 0).ch, '\u{fffd}');
    assert_eq!(render::glyph_char('─'), Some('-'));
    assert_eq!(render::glyph_char('é'), None);
}

#[test]
fn resize_keeps_the_cursor_line() {
    let mut t = term(10, 5, b"1\r\n2\r\n3\r\n4\r\n5");
    t.screen.resize(4, 2);
    assert_eq!(
        (text(&t.screen, 0), text(&t.screen, 1)),
        ("4".into(), "5".into())
    );
    assert_eq!(t.screen.cursor(), (1, 1));
    t.screen.resize(20, 6);
    assert_eq!(text(&t.screen, 1), "5");
    assert_eq!(t.screen.region(), (0, 6));
}

/// The pixels of cell `(cx, cy)`.
fn cell_pixels(r: &Renderer, cx: usize, cy: usize) -> Vec<u32> {
    let (w, _) = r.size();
    (0..CELL_H)
        .flat_map(|y| r.pixels()[(cy * CELL_H + y) * w + cx * CELL_W..][..CELL_W].to_vec())
        .collect()
}

#[test]
fn renders_glyphs_in_the_gui_font_and_only_what_changed() {
    assert_eq!((CELL_W, CELL_H), (7, 16));
    let mut t = term(10, 3, b"A");
    let mut r = Renderer::new(10 * CELL_W, 3 * CELL_H);
    let view = View {
        selection: None,
        focused: true,
    };
    let d = r.render(&t.screen, &view);
    assert_eq!(d, vec![bulkhead_abi::gui::Rect::new(0, 0, 70, 48)]);
    let raster = noto_sans_mono_bitmap::get_raster(
        'A',
        noto_sans_mono_bitmap::FontWeight::Regular,
        noto_sans_mono_bitmap::RasterHeight::Size16,
    )
    .unwrap();
    let want: Vec<u32> = raster
        .rows()
        .flat_map(|row| {
            row.iter()
                .map(|&a| render::blend(render::DEFAULT_FG, render::DEFAULT_BG, a))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(cell_pixels(&r, 0, 0), want);
    // The focused cursor is a block: cell 1 in the foreground colour.
    assert!(
        cell_pixels(&r, 1, 0)
            .iter()
            .all(|&p| p == render::DEFAULT_FG)
    );
    // Nothing changed: no damage. One character: its cell and the cursor's.
    assert!(r.render(&t.screen, &view).is_empty());
    t.feed(b"\r\n  b");
    let d = r.render(&t.screen, &view);
    // The cursor's old cell (1, 0), `b` at (2, 1), the cursor at (3, 1): one rectangle.
    assert_eq!(d, vec![bulkhead_abi::gui::Rect::new(7, 0, 21, 32)]);
    // Unfocused: the cursor is an outline.
    let d = r.render(
        &t.screen,
        &View {
            selection: None,
            focused: false,
        },
    );
    assert_eq!(
        d,
        vec![bulkhead_abi::gui::Rect::new(
            3 * CELL_W as u16,
            16,
            CELL_W as u16,
            16
        )]
    );
    // A character outside the font: a hollow box, unlike a blank.
    t.feed("\u{4e2d}".as_bytes());
    r.render(&t.screen, &view);
    assert!(cell_pixels(&r, 3, 1).contains(&render::DEFAULT_FG));
}

#[test]
fn selection_and_last_line() {
    let t = term(10, 4, b"one two\r\nthree\r\n\r\n$ ");
    let s = Selection {
        anchor: (4, 0),
        head: (2, 1),
    };
    assert_eq!(s.text(t.screen.grid()), "two\nthr");
    assert!(s.contains(9, 0) && s.contains(0, 1) && !s.contains(3, 0) && !s.contains(3, 1));
    let back = Selection {
        anchor: (2, 1),
        head: (4, 0),
    };
    assert_eq!(back.text(t.screen.grid()), "two\nthr");
    assert_eq!(
        select::last_output_line(t.screen.grid(), 3).as_deref(),
        Some("three")
    );
    assert_eq!(select::last_output_line(&Grid::new(3, 3), 2), None);
    let mut m = Mouse::default();
    assert!(m.pointer((1, 1), true));
    assert!(m.pointer((3, 2), true));
    assert!(!m.pointer((3, 2), false));
    assert_eq!(
        m.selection,
        Some(Selection {
            anchor: (1, 1),
            head: (3, 2)
        })
    );
    // Motion without the button does nothing; a click clears.
    assert!(!m.pointer((5, 3), false));
    m.pointer((5, 3), true);
    assert!(m.pointer((5, 3), false));
    assert_eq!(m.selection, None);
}

#[test]
fn keys_to_bytes() {
    let mut k = KeyState::default();
    let mut press = |usage, mods| k.press(usage, mods, false);
    assert_eq!(press(0x04, 0), b"a");
    assert_eq!(press(0x04, SHIFT), b"A");
    assert_eq!(press(0x1e, SHIFT), b"!");
    assert_eq!(press(0x27, 0), b"0");
    assert_eq!(press(0x38, SHIFT), b"?");
    assert_eq!(press(0x34, SHIFT), b"\"");
    assert_eq!(press(0x28, 0), b"\r");
    assert_eq!(press(0x2a, 0), b"\x7f");
    assert_eq!(press(0x2a, CTRL), b"\x08");
    assert_eq!(press(0x2b, 0), b"\t");
    assert_eq!(press(0x2b, SHIFT), b"\x1b[Z");
    assert_eq!(press(0x29, 0), b"\x1b");
    assert_eq!(press(0x06, CTRL), b"\x03");
    assert_eq!(press(0x07, CTRL | SHIFT), b"\x04");
    assert_eq!(press(0x2f, CTRL), b"\x1b");
    assert_eq!(press(0x2c, CTRL), b"\x00");
    assert_eq!(press(0x05, ALT), b"\x1bb");
    assert_eq!(press(0x52, 0), b"\x1b[A");
    assert_eq!(press(0x50, CTRL), b"\x1b[D");
    assert_eq!(press(0x4a, 0), b"\x1b[1~");
    assert_eq!(press(0x4d, 0), b"\x1b[4~");
    assert_eq!(press(0x4b, 0), b"\x1b[5~");
    assert_eq!(press(0x4e, 0), b"\x1b[6~");
    assert_eq!(press(0x4c, 0), b"\x1b[3~");
    assert_eq!(press(0x3a, 0), b"\x1b[[A");
    assert_eq!(press(0x45, 0), b"\x1b[24~");
    assert_eq!(press(0x59, 0), b"1");
    assert_eq!(press(0xe1, SHIFT), b"");
    assert_eq!(k.press(0x52, 0, true), b"\x1bOA");
    // Caps Lock: letters only, Shift inverts it.
    assert_eq!(k.press(0x39, 0, false), b"");
    assert_eq!(k.press(0x04, 0, false), b"A");
    assert_eq!(k.press(0x04, SHIFT, false), b"a");
    assert_eq!(k.press(0x1e, 0, false), b"1");
}

#[test]
fn pastes_are_typed_text() {
    assert_eq!(
        keys::paste(b"ls -l\nx\r\ny\x1b[31m\x07\tz", false),
        b"ls -l\rx\ry[31m\tz"
    );
    assert_eq!(
        keys::paste(b"a\x1b[201~b", true),
        b"\x1b[200~a[201~b\x1b[201~"
    );
}

/// Reads from `shell` until `want` shows up in its output (or 10 s pass).
fn read_until(shell: &mut dyn super::pty::Shell, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        match shell.read(&mut buf).unwrap() {
            Some(0) => break,
            Some(n) => out.extend_from_slice(&buf[..n]),
            None => std::thread::sleep(Duration::from_millis(10)),
        }
        if String::from_utf8_lossy(&out).contains(want) {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_real_shell_on_a_pty() {
    let mut sp = PtySpawner {
        shell: "/bin/sh".into(),
        qube: "test".into(),
    };
    let mut sh = sp.spawn(91, 25, 637, 400).unwrap();
    sh.write(b"echo $TERM; stty size; echo done-$((6*7))\r")
        .unwrap();
    let out = read_until(sh.as_mut(), "done-42");
    assert!(out.contains("linux") && out.contains("25 91"), "{out:?}");
    sh.resize(40, 10, 280, 160);
    sh.write(b"stty size\r").unwrap();
    assert!(read_until(sh.as_mut(), "10 40").contains("10 40"));
    // Hanging up ends it: the terminal reads end-of-file, the status is reaped.
    sh.hang_up();
    read_until(sh.as_mut(), "\u{0}never");
    let deadline = Instant::now() + Duration::from_secs(5);
    while sh.exit_status().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(sh.exit_status(), Some(128 + 1));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Any bytes, in any pieces, with resizes between them: no panic, the cursor and the
    /// region stay inside the grid.
    #[test]
    fn any_bytes_keep_the_cursor_inside(
        cols in 1usize..40,
        rows in 1usize..20,
        chunks in proptest::collection::vec(
            (proptest::collection::vec(prop_oneof![
                any::<u8>(),
                Just(0x1b), Just(b'['), Just(b';'), Just(b'?'), Just(b'0'), Just(b'9'),
            ], 0..80), proptest::option::of((0usize..50, 0usize..30))),
            1..12,
        ),
    ) {
        let mut t = Terminal::new(cols, rows);
        for (bytes, resize) in chunks {
            t.feed(&bytes);
            if let Some((c, r)) = resize {
                t.screen.resize(c, r);
            }
            let s = &t.screen;
            let (x, y) = s.cursor();
            let g = s.grid();
            prop_assert!(x < g.cols() && y < g.rows());
            let (top, bottom) = s.region();
            prop_assert!(top < bottom && bottom <= g.rows());
            let _ = t.screen.take_replies();
        }
    }

    /// Drawing step by step gives the pixels a fresh full drawing gives, and every pixel that
    /// changed lies in a damage rectangle.
    #[test]
    fn partial_redraws_equal_a_full_one(
        chunks in proptest::collection::vec(
            proptest::collection::vec(prop_oneof![
                b' '..=b'~', Just(0x1b), Just(b'['), Just(b'\n'), Just(b'\r'), Just(b';'),
                Just(b'm'), Just(b'H'), Just(b'K'), Just(b'L'), Just(b'3'),
            ], 0..60),
            1..8,
        ),
        focused in any::<bool>(),
        sel in proptest::option::of(((0usize..12, 0usize..6), (0usize..12, 0usize..6))),
    ) {
        let (cols, rows) = (12, 6);
        let mut t = Terminal::new(cols, rows);
        let mut r = Renderer::new(cols * CELL_W, rows * CELL_H);
        let view = View {
            selection: sel.map(|(anchor, head)| Selection { anchor, head }),
            focused,
        };
        let (w, _) = r.size();
        for bytes in chunks {
            let before = r.pixels().to_vec();
            t.feed(&bytes);
            let damage = r.render(&t.screen, &view);
            for (i, (a, b)) in before.iter().zip(r.pixels()).enumerate() {
                if a != b {
                    let (x, y) = ((i % w) as u16, (i / w) as u16);
                    prop_assert!(damage.iter().any(|d| x >= d.x && x < d.x + d.w && y >= d.y && y < d.y + d.h));
                }
            }
        }
        let mut fresh = Renderer::new(cols * CELL_W, rows * CELL_H);
        fresh.render(&t.screen, &view);
        prop_assert!(fresh.pixels() == r.pixels());
    }
}
