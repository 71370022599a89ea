//! A screenshot: what QMP's `screendump` writes (binary PPM, `P6`), parsed into RGB pixels
//! that tests can look at, and written as PNG for people.
//!
//! The parser takes any bytes: a malformed or truncated file is an error that says what is
//! wrong, never a panic.

use anyhow::{Context, Result, bail, ensure};
use std::path::Path;

/// Largest width or height accepted from a file (QEMU's displays stay far below).
pub const MAX_SIDE: u32 = 16384;

/// An RGB image, 8 bits a channel, rows top to bottom.
#[derive(Clone, PartialEq, Eq)]
pub struct Image {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

/// A rectangle of pixels: `x`, `y` of its top left corner, then its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    /// The rectangle at `(x, y)` of `width` by `height`.
    pub fn new(x: u32, y: u32, width: u32, height: u32) -> Rect {
        Rect {
            x,
            y,
            width,
            height,
        }
    }
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Image({}x{})", self.width, self.height)
    }
}

#[allow(dead_code, reason = "API for the GUI scenarios")]
impl Image {
    /// An image from its pixels (`width * height * 3` bytes, rows top to bottom).
    pub fn new(width: u32, height: u32, rgb: Vec<u8>) -> Result<Image> {
        let expected = width as usize * height as usize * 3;
        ensure!(
            rgb.len() == expected,
            "a {width}x{height} image has {expected} bytes of RGB, not {}",
            rgb.len()
        );
        Ok(Image { width, height, rgb })
    }

    /// A `width` by `height` image of one colour.
    pub fn filled(width: u32, height: u32, colour: [u8; 3]) -> Image {
        let rgb = colour.repeat(width as usize * height as usize);
        Image { width, height, rgb }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// The pixels, 3 bytes each, rows top to bottom.
    pub fn rgb(&self) -> &[u8] {
        &self.rgb
    }

    /// The colour at `(x, y)`. Panics outside the image, like slice indexing.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        assert!(
            x < self.width && y < self.height,
            "pixel ({x}, {y}) is outside a {}x{} image",
            self.width,
            self.height
        );
        let at = (y as usize * self.width as usize + x as usize) * 3;
        [self.rgb[at], self.rgb[at + 1], self.rgb[at + 2]]
    }

    /// Whether `rect` lies wholly inside the image.
    pub fn contains(&self, rect: Rect) -> bool {
        u64::from(rect.x) + u64::from(rect.width) <= u64::from(self.width)
            && u64::from(rect.y) + u64::from(rect.height) <= u64::from(self.height)
    }

    /// The part of the image inside `rect`, which must lie wholly inside it.
    pub fn crop(&self, rect: Rect) -> Result<Image> {
        ensure!(
            self.contains(rect),
            "{rect:?} is not inside a {}x{} image",
            self.width,
            self.height
        );
        let mut rgb = Vec::with_capacity(rect.width as usize * rect.height as usize * 3);
        for y in rect.y..rect.y + rect.height {
            let start = (y as usize * self.width as usize + rect.x as usize) * 3;
            rgb.extend_from_slice(&self.rgb[start..start + rect.width as usize * 3]);
        }
        Image::new(rect.width, rect.height, rgb)
    }

    /// Whether `other`, placed with its top left corner at `(x, y)`, matches this image
    /// pixel for pixel (false when it does not fit).
    pub fn region_equals(&self, x: u32, y: u32, other: &Image) -> bool {
        self.crop(Rect::new(x, y, other.width, other.height))
            .is_ok_and(|part| part == *other)
    }

    /// How many pixels of `rect` (clipped to the image) are exactly `colour`.
    pub fn count_pixels(&self, rect: Rect, colour: [u8; 3]) -> usize {
        let x_end = rect.x.saturating_add(rect.width).min(self.width);
        let y_end = rect.y.saturating_add(rect.height).min(self.height);
        (rect.y..y_end)
            .flat_map(|y| (rect.x..x_end).map(move |x| (x, y)))
            .filter(|&(x, y)| self.pixel(x, y) == colour)
            .count()
    }

    /// The whole image as a rectangle.
    pub fn bounds(&self) -> Rect {
        Rect::new(0, 0, self.width, self.height)
    }

    /// Parses a binary PPM (`P6`, 8-bit samples; a `maxval` below 255 is scaled up).
    pub fn parse_ppm(bytes: &[u8]) -> Result<Image> {
        let mut header = Header { bytes, at: 0 };
        ensure!(
            bytes.starts_with(b"P6"),
            "not a binary PPM: it starts with {:?}, not \"P6\"",
            String::from_utf8_lossy(&bytes[..bytes.len().min(2)])
        );
        header.at = 2;
        let width = header.number("width")?;
        let height = header.number("height")?;
        let maxval = header.number("maxval")?;
        for (what, side) in [("width", width), ("height", height)] {
            ensure!(
                (1..=MAX_SIDE).contains(&side),
                "PPM {what} {side} is not in 1..={MAX_SIDE}"
            );
        }
        ensure!(
            (1..=255).contains(&maxval),
            "PPM maxval {maxval} is not in 1..=255 (16-bit samples are not supported)"
        );
        // Exactly one whitespace byte separates the header from the samples.
        match bytes.get(header.at) {
            Some(b) if b.is_ascii_whitespace() => header.at += 1,
            _ => bail!("PPM header does not end in a whitespace byte after maxval"),
        }
        let samples = &bytes[header.at..];
        let expected = width as usize * height as usize * 3;
        ensure!(
            samples.len() >= expected,
            "truncated PPM: {} of the {expected} sample bytes of a {width}x{height} image",
            samples.len()
        );
        ensure!(
            samples.len() == expected,
            "PPM has {} bytes after the {expected} sample bytes of a {width}x{height} image",
            samples.len() - expected
        );
        if let Some(at) = samples.iter().position(|&s| u32::from(s) > maxval) {
            bail!(
                "PPM sample {} at byte {at} exceeds maxval {maxval}",
                samples[at]
            );
        }
        let rgb = if maxval == 255 {
            samples.to_vec()
        } else {
            let scale = |s: &u8| ((u32::from(*s) * 255 + maxval / 2) / maxval) as u8;
            samples.iter().map(scale).collect()
        };
        Image::new(width, height, rgb)
    }

    /// Reads and parses the PPM file at `path`.
    pub fn read_ppm(path: &Path) -> Result<Image> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Image::parse_ppm(&bytes).with_context(|| format!("parsing {}", path.display()))
    }

    /// The image as a binary PPM (what [`Image::parse_ppm`] reads back).
    pub fn to_ppm(&self) -> Vec<u8> {
        let mut out = format!("P6\n{} {}\n255\n", self.width, self.height).into_bytes();
        out.extend_from_slice(&self.rgb);
        out
    }

    /// Writes the image as a PNG file, for people to look at.
    pub fn write_png(&self, path: &Path) -> Result<()> {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), self.width, self.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .with_context(|| format!("writing {}", path.display()))?;
        writer
            .write_image_data(&self.rgb)
            .with_context(|| format!("writing {}", path.display()))?;
        writer
            .finish()
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// A cursor over a PPM header: numbers separated by whitespace and `#` comments.
struct Header<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Header<'_> {
    /// The next decimal number, after whitespace and comments.
    fn number(&mut self, what: &str) -> Result<u32> {
        loop {
            match self.bytes.get(self.at) {
                Some(b) if b.is_ascii_whitespace() => self.at += 1,
                Some(b'#') => {
                    while self.bytes.get(self.at).is_some_and(|&b| b != b'\n') {
                        self.at += 1;
                    }
                }
                _ => break,
            }
        }
        let start = self.at;
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        let digits = &self.bytes[start..self.at];
        ensure!(
            !digits.is_empty(),
            "PPM header: expected the {what} at byte {start}, found {}",
            match self.bytes.get(start) {
                Some(b) => format!("{:?}", char::from(*b)),
                None => "the end of the file".into(),
            }
        );
        // Digits only, so the text is ASCII; too many of them overflow u32.
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .with_context(|| format!("PPM header: the {what} is too large"))
    }
}

#[cfg(test)]
mod tests;
