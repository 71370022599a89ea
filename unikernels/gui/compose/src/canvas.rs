//! A pixel buffer (`0x00RRGGBB` per pixel, rows `width` apart) and what the gui qube draws
//! into it with its own hands: filled rectangles and text in its own font.

use crate::geom::Rect;
use alloc::vec;
use alloc::vec::Vec;
use noto_sans_mono_bitmap::{FontWeight, RasterHeight, get_raster, get_raster_width};

/// Height of a line of text, in pixels.
pub const TEXT_HEIGHT: i32 = 16;
/// Width of one character, in pixels (the font is monospaced).
pub const CHAR_WIDTH: i32 = get_raster_width(FontWeight::Regular, RasterHeight::Size16) as i32;

/// A screen-sized (or any-sized) pixel buffer.
pub struct Canvas {
    width: i32,
    height: i32,
    px: Vec<u32>,
}

impl Canvas {
    /// A black canvas of `width × height` pixels (each at least 1, at most 16384).
    pub fn new(width: u32, height: u32) -> Canvas {
        let (w, h) = (width.clamp(1, 16384), height.clamp(1, 16384));
        Canvas {
            width: w as i32,
            height: h as i32,
            px: vec![0; (w * h) as usize],
        }
    }

    /// Its size as a rectangle at (0, 0).
    pub fn bounds(&self) -> Rect {
        Rect::new(0, 0, self.width, self.height)
    }

    /// Pixels per row.
    pub fn width(&self) -> u32 {
        self.width as u32
    }

    /// Rows.
    pub fn height(&self) -> u32 {
        self.height as u32
    }

    /// Pixel `(x, y)`, if inside.
    pub fn pixel(&self, x: i32, y: i32) -> Option<u32> {
        self.bounds()
            .contains(x, y)
            .then(|| self.px[(y * self.width + x) as usize])
    }

    /// Row `y`'s pixels from `x0` (`len` of them), clipped to the canvas.
    pub fn row(&self, y: i32, x0: i32, len: i32) -> &[u32] {
        let r = Rect::new(x0, y, len, 1).intersect(&self.bounds());
        if r.is_empty() {
            return &[];
        }
        let start = (r.y * self.width + r.x) as usize;
        &self.px[start..start + r.w as usize]
    }

    /// Row `y`'s pixels from `x0`, writable, clipped to the canvas.
    pub fn row_mut(&mut self, y: i32, x0: i32, len: i32) -> &mut [u32] {
        let r = Rect::new(x0, y, len, 1).intersect(&self.bounds());
        if r.is_empty() {
            return &mut [];
        }
        let start = (r.y * self.width + r.x) as usize;
        &mut self.px[start..start + r.w as usize]
    }

    /// Fills `r ∩ clip` (and the canvas) with `colour`.
    pub fn fill(&mut self, r: Rect, clip: Rect, colour: u32) {
        let r = r.intersect(&clip);
        for y in r.y..r.bottom() {
            self.row_mut(y, r.x, r.w).fill(colour);
        }
    }

    /// Draws `text` from `(x, y)` (its top-left corner) in `fg` over `bg`, inside `clip`;
    /// characters outside printable ASCII are drawn as `?`. Returns where the text ends.
    pub fn text(&mut self, x: i32, y: i32, text: &str, fg: u32, bg: u32, clip: Rect) -> i32 {
        let clip = clip.intersect(&self.bounds());
        let mut cx = x;
        for c in text.chars() {
            let c = if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            };
            let cell = Rect::new(cx, y, CHAR_WIDTH, TEXT_HEIGHT);
            if !cell.intersect(&clip).is_empty()
                && let Some(glyph) = get_raster(c, FontWeight::Regular, RasterHeight::Size16)
            {
                for (gy, row) in glyph.rows().enumerate() {
                    for (gx, &a) in row.iter().enumerate() {
                        let (px, py) = (cx + gx as i32, y + gy as i32);
                        if clip.contains(px, py) {
                            self.px[(py * self.width + px) as usize] = blend(fg, bg, a);
                        }
                    }
                }
            }
            cx = cx.saturating_add(CHAR_WIDTH);
        }
        cx
    }
}

/// `fg` over `bg` with coverage `a` (0..=255), per channel.
pub fn blend(fg: u32, bg: u32, a: u8) -> u32 {
    let a = u32::from(a);
    let ch = |shift: u32| {
        let (f, b) = ((fg >> shift) & 0xff, (bg >> shift) & 0xff);
        ((f * a + b * (255 - a) + 127) / 255) << shift
    };
    ch(16) | ch(8) | ch(0)
}

/// Black or white, whichever reads better on `bg`.
pub fn text_colour_on(bg: u32) -> u32 {
    let (r, g, b) = ((bg >> 16) & 0xff, (bg >> 8) & 0xff, bg & 0xff);
    if r * 299 + g * 587 + b * 114 > 128_000 {
        0x0000_0000
    } else {
        0x00FF_FFFF
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_and_text_stay_inside_the_clip() {
        let mut c = Canvas::new(64, 32);
        c.fill(Rect::new(-5, -5, 20, 20), Rect::new(2, 2, 100, 100), 0xff);
        assert_eq!(c.pixel(1, 1), Some(0));
        assert_eq!(c.pixel(2, 2), Some(0xff));
        assert_eq!(c.pixel(14, 14), Some(0xff));
        assert_eq!(c.pixel(15, 15), Some(0));
        let clip = Rect::new(0, 16, 64, 16);
        let end = c.text(0, 16, "AB\u{7}", 0xffffff, 0, clip);
        assert_eq!(end, 3 * CHAR_WIDTH);
        // Something was drawn for 'A', nothing above the clip.
        let lit = (16..32).flat_map(|y| (0..CHAR_WIDTH).map(move |x| (x, y)));
        assert!(lit.clone().any(|(x, y)| c.pixel(x, y) != Some(0)));
        assert!((0..CHAR_WIDTH).all(|x| c.pixel(x, 0) == Some(0)));
    }

    #[test]
    fn blending_and_contrast() {
        assert_eq!(blend(0xffffff, 0, 255), 0xffffff);
        assert_eq!(blend(0xffffff, 0x123456, 0), 0x123456);
        assert_eq!(text_colour_on(0xEDD400), 0);
        assert_eq!(text_colour_on(0x3465A4), 0xffffff);
    }
}
