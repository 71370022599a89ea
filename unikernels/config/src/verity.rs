//! The dm-verity parameters of a template's root volume, as a Linux qube's kernel command line
//! carries them (`bulkhead.verity=<data_blocks>:<hash_start_block>:<root hex>:<salt hex>`):
//! written by xtask from the template it built (`xtask/src/template/`), read by the AppVM's
//! agent, which hands them to the kernel's `verity` target (`linux-appvm/agent/src/blockdev/`).
//! They come from the manifest and are trusted; the volume's bytes are not (the storage qube
//! could change them), and dm-verity checks every block read against [`VerityParams::root`].
//!
//! The format is fixed: version 1, SHA-256, data and hash blocks of [`VerityParams::BLOCK`]
//! bytes, the hash tree in the same volume from block `hash_start_block` on.

use core::fmt;

/// The tree's geometry, root hash and salt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerityParams {
    /// Data blocks the tree covers (the file system's size, in 4096-byte blocks).
    pub data_blocks: u64,
    /// Where the tree starts in the volume, in 4096-byte blocks.
    pub hash_start_block: u64,
    /// The root hash (SHA-256).
    pub root: [u8; 32],
    /// The salt, hashed before every block.
    pub salt: [u8; 32],
}

impl VerityParams {
    /// The data and hash block size.
    pub const BLOCK: u64 = 4096;
    /// 512-byte sectors in a block.
    pub const SECTORS_PER_BLOCK: u64 = Self::BLOCK / 512;

    /// Parses the value of `bulkhead.verity=`; the error says what is wrong.
    pub fn parse(value: &str) -> Result<VerityParams, &'static str> {
        let mut fields = value.split(':');
        let (Some(data), Some(hash_start), Some(root), Some(salt), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err("expected <data_blocks>:<hash_start_block>:<root hash>:<salt>, 4 fields");
        };
        let number = |s: &str| -> Option<u64> {
            // Digits only: u64's parser would also take a leading '+'.
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        let data_blocks = number(data).ok_or("data_blocks is not a decimal number")?;
        let hash_start_block =
            number(hash_start).ok_or("hash_start_block is not a decimal number")?;
        if data_blocks == 0 {
            return Err("data_blocks is 0");
        }
        // Both are turned into sectors (`* 8`), and the tree lies after its start.
        let limit = u64::MAX / Self::SECTORS_PER_BLOCK;
        if data_blocks > limit || hash_start_block >= limit {
            return Err("a block number is too large");
        }
        let root = hex32(root).ok_or("the root hash is not 64 hex digits")?;
        let salt = hex32(salt).ok_or("the salt is not 64 hex digits")?;
        Ok(VerityParams {
            data_blocks,
            hash_start_block,
            root,
            salt,
        })
    }

    /// The `verity` target's table arguments over `dev` (a path or `major:minor`), which
    /// holds both the data and the tree: `1 <dev> <dev> 4096 4096 <data blocks> <hash
    /// start block> sha256 <root> <salt>` (`Documentation/admin-guide/device-mapper/verity.rst`).
    pub fn table_args<D: fmt::Display>(&self, dev: D) -> TableArgs<'_, D> {
        TableArgs { params: self, dev }
    }
}

/// The value of `bulkhead.verity=`.
impl fmt::Display for VerityParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.data_blocks,
            self.hash_start_block,
            Hex(&self.root),
            Hex(&self.salt)
        )
    }
}

/// [`VerityParams::table_args`], written when displayed.
pub struct TableArgs<'a, D> {
    params: &'a VerityParams,
    dev: D,
}

impl<D: fmt::Display> fmt::Display for TableArgs<'_, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (p, dev, b) = (self.params, &self.dev, VerityParams::BLOCK);
        write!(
            f,
            "1 {dev} {dev} {b} {b} {} {} sha256 {} {}",
            p.data_blocks,
            p.hash_start_block,
            Hex(&p.root),
            Hex(&p.salt)
        )
    }
}

/// Bytes as lower-case hexadecimal, when displayed.
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// 64 hexadecimal digits (either case) as 32 bytes.
pub fn hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}
