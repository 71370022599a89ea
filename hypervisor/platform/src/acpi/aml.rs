//! A small AML (ACPI Machine Language) writer: just the term objects the DSDT needs, encoded
//! as the ACPI specification (6.x, section 20 "ACPI Machine Language Specification") says.
//!
//! - Names: a `NameString` is an optional root prefix `\` (0x5C), then one `NameSeg` of four
//!   characters (`_` pads shorter ones), or `DualNamePrefix` 0x2E + two segments, or
//!   `MultiNamePrefix` 0x2F + a count + that many segments.
//! - `PkgLength` counts itself and everything after it up to the end of the object. One byte
//!   holds lengths up to 63; otherwise bits 7–6 of the lead byte give the number of following
//!   bytes (1–3), its bits 3–0 the low nibble and the following bytes the next bits, least
//!   significant first (bits 5–4 of the lead byte stay 0).
//! - Integers: `ZeroOp` 0x00 and `OneOp` 0x01, else the shortest of `BytePrefix` 0x0A,
//!   `WordPrefix` 0x0B, `DWordPrefix` 0x0C, `QWordPrefix` 0x0E, little-endian.
//! - `NameOp` 0x08, `ScopeOp` 0x10, `BufferOp` 0x11, `PackageOp` 0x12 and
//!   `DeviceOp` 0x5B 0x82 (`ExtOpPrefix` then the device opcode).
//!
//! [`Aml`] writes into a caller's buffer. Objects with a `PkgLength` take a closure that
//! writes their contents; the length is inserted in front afterwards, so nothing needs to be
//! sized in advance. If the buffer is too small, [`Aml::finish`] says so.

/// Writes AML into a byte slice.
pub struct Aml<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
}

/// `NameOp`.
const NAME_OP: u8 = 0x08;
/// `ScopeOp`.
const SCOPE_OP: u8 = 0x10;
/// `BufferOp`.
const BUFFER_OP: u8 = 0x11;
/// `PackageOp`.
const PACKAGE_OP: u8 = 0x12;
/// `ExtOpPrefix` and `DeviceOp`.
const DEVICE_OP: [u8; 2] = [0x5B, 0x82];

/// Bytes a `PkgLength` takes in front of `content` bytes, or `None` if it cannot encode them
/// (more than 2^28 - 5).
pub fn pkg_length_size(content: usize) -> Option<usize> {
    (1..=4).find(|&k| {
        content + k
            < if k == 1 {
                1 << 6
            } else {
                1 << (4 + 8 * (k - 1))
            }
    })
}

/// The `PkgLength` in front of `content` bytes; returns the bytes used in `out` (1 to 4).
pub fn pkg_length(content: usize, out: &mut [u8; 4]) -> Option<usize> {
    let k = pkg_length_size(content)?;
    let total = content + k;
    if k == 1 {
        out[0] = total as u8;
    } else {
        out[0] = (((k - 1) as u8) << 6) | (total & 0xF) as u8;
        for (i, b) in out[1..k].iter_mut().enumerate() {
            *b = (total >> (4 + 8 * i)) as u8;
        }
    }
    Some(k)
}

/// The 32-bit compressed form of an EISA id such as `"PNP0A03"`: three upper-case letters
/// (5 bits each, `A` = 1) and four hexadecimal digits, stored big-endian-within-little-endian
/// as `iasl`'s `EisaId ()` does. `None` if `id` is not of that form.
pub const fn eisa_id(id: &str) -> Option<u32> {
    let b = id.as_bytes();
    if b.len() != 7 {
        return None;
    }
    let mut v: u32 = 0;
    let mut i = 0;
    while i < 3 {
        if !b[i].is_ascii_uppercase() {
            return None;
        }
        v = (v << 5) | (b[i] - b'@') as u32;
        i += 1;
    }
    while i < 7 {
        let d = match b[i] {
            c @ b'0'..=b'9' => c - b'0',
            c @ b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | d as u32;
        i += 1;
    }
    // The 16-bit letters and the 16-bit product code are each big-endian in memory.
    Some(
        (((v >> 16) as u16).swap_bytes() as u32)
            | ((((v & 0xFFFF) as u16).swap_bytes() as u32) << 16),
    )
}

impl<'a> Aml<'a> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Aml<'a> {
        Aml {
            buf,
            len: 0,
            overflow: false,
        }
    }

    /// The bytes written, or `None` if the buffer was too small for them.
    pub fn finish(self) -> Option<&'a [u8]> {
        if self.overflow {
            None
        } else {
            Some(&self.buf[..self.len])
        }
    }

    /// Appends raw bytes.
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        match self.buf.get_mut(self.len..self.len + b.len()) {
            Some(dst) if !self.overflow => {
                dst.copy_from_slice(b);
                self.len += b.len();
            }
            _ => self.overflow = true,
        }
        self
    }

    /// A `NameString`: `path` is an optional `\` then segments separated by `.`, each at
    /// most four characters (padded with `_`). An empty or longer segment is a bug.
    pub fn name_string(&mut self, path: &str) -> &mut Self {
        let (root, rest) = match path.strip_prefix('\\') {
            Some(r) => (true, r),
            None => (false, path),
        };
        if root {
            self.raw(b"\\");
        }
        let count = rest.split('.').count();
        match count {
            1 => {}
            2 => {
                self.raw(&[0x2E]);
            }
            n => {
                self.raw(&[0x2F, n as u8]);
            }
        }
        for seg in rest.split('.') {
            let mut s = [b'_'; 4];
            if seg.is_empty() || seg.len() > 4 {
                self.overflow = true;
                return self;
            }
            s[..seg.len()].copy_from_slice(seg.as_bytes());
            self.raw(&s);
        }
        self
    }

    /// An integer constant, in its shortest encoding.
    pub fn integer(&mut self, v: u64) -> &mut Self {
        match v {
            0 => self.raw(&[0x00]),
            1 => self.raw(&[0x01]),
            2..=0xFF => self.raw(&[0x0A, v as u8]),
            0x100..=0xFFFF => self.raw(&[0x0B]).raw(&(v as u16).to_le_bytes()),
            0x1_0000..=0xFFFF_FFFF => self.raw(&[0x0C]).raw(&(v as u32).to_le_bytes()),
            _ => self.raw(&[0x0E]).raw(&v.to_le_bytes()),
        }
    }

    /// A 32-bit integer always as `DWordPrefix` (as `iasl` writes an `EisaId ()`).
    pub fn dword(&mut self, v: u32) -> &mut Self {
        self.raw(&[0x0C]).raw(&v.to_le_bytes())
    }

    /// `Name (path, object)`: `object` writes one data object.
    pub fn name(&mut self, path: &str, object: impl FnOnce(&mut Self)) -> &mut Self {
        self.raw(&[NAME_OP]).name_string(path);
        object(self);
        self
    }

    /// `Scope (path) { ... }`.
    pub fn scope(&mut self, path: &str, body: impl FnOnce(&mut Self)) -> &mut Self {
        self.raw(&[SCOPE_OP]);
        self.with_pkg_length(|a| {
            a.name_string(path);
            body(a);
        })
    }

    /// `Device (path) { ... }`.
    pub fn device(&mut self, path: &str, body: impl FnOnce(&mut Self)) -> &mut Self {
        self.raw(&DEVICE_OP);
        self.with_pkg_length(|a| {
            a.name_string(path);
            body(a);
        })
    }

    /// `Package (elements) { ... }`: `body` must write exactly `elements` data objects.
    pub fn package(&mut self, elements: u8, body: impl FnOnce(&mut Self)) -> &mut Self {
        self.raw(&[PACKAGE_OP]);
        self.with_pkg_length(|a| {
            a.raw(&[elements]);
            body(a);
        })
    }

    /// `Package () { ints... }` of integer constants.
    pub fn int_package(&mut self, ints: &[u64]) -> &mut Self {
        self.package(ints.len() as u8, |a| {
            for &v in ints {
                a.integer(v);
            }
        })
    }

    /// `Buffer () { bytes }`, its size written as an integer.
    pub fn buffer(&mut self, bytes: &[u8]) -> &mut Self {
        self.raw(&[BUFFER_OP]);
        self.with_pkg_length(|a| {
            a.integer(bytes.len() as u64).raw(bytes);
        })
    }

    /// Writes `body`, then inserts the `PkgLength` that covers it in front of it.
    fn with_pkg_length(&mut self, body: impl FnOnce(&mut Self)) -> &mut Self {
        let start = self.len;
        body(self);
        if self.overflow {
            return self;
        }
        let mut enc = [0u8; 4];
        let Some(k) = pkg_length(self.len - start, &mut enc) else {
            self.overflow = true;
            return self;
        };
        if self.len + k > self.buf.len() {
            self.overflow = true;
            return self;
        }
        self.buf.copy_within(start..self.len, start + k);
        self.buf[start..start + k].copy_from_slice(&enc[..k]);
        self.len += k;
        self
    }
}

#[cfg(test)]
mod tests;
