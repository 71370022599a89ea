//! The dm-verity hash tree, on-disk format version 1 with SHA-256 and 4096-byte blocks, as
//! `veritysetup format --format=1 --no-superblock` writes it; the parameters travel in the
//! kernel's table (or `bulkhead.verity=`), not in a superblock.
//!
//! The format (Linux `Documentation/admin-guide/device-mapper/verity.rst`, cryptsetup's
//! `lib/verity/verity_hash.c`):
//! - every digest is SHA-256 over the salt followed by one block (version 1 prepends the salt);
//! - level 0 holds the digests of the data blocks, 128 to a hash block (4096 / 32), the last
//!   hash block zero-padded; each level above holds the digests of the hash blocks below,
//!   until a level is a single block;
//! - on disk the levels follow one another from `hash_start_block` on, the top (root-most)
//!   level first and level 0 last;
//! - the root hash is the digest of the top level's one block; with a single data block there
//!   is no hash block at all and the root hash is that block's digest.

use anyhow::{Context, Result, ensure};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// The size of a data block and of a hash block.
pub const BLOCK: usize = 4096;
/// The size of a SHA-256 digest (already a power of two: no padding between digests).
const DIGEST: usize = 32;
/// Digests in one hash block.
const PER_BLOCK: u64 = (BLOCK / DIGEST) as u64;

/// What the kernel needs to check a device: the tree's geometry, root hash and salt, in the
/// format the AppVM's agent reads (`bulkhead_qubeconfig::verity`, one definition for both).
pub use bulkhead_qubeconfig::verity::VerityParams as Verity;

/// One level of the tree: where it lies after `hash_start_block` and how long it is, in
/// hash blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    /// Its first block, counted from `hash_start_block`.
    pub first: u64,
    /// Its number of blocks.
    pub blocks: u64,
}

/// The levels of the tree over `data_blocks` blocks, level 0 (the data blocks' digests)
/// first in the vector but last on disk. Empty for a single data block.
pub fn levels(data_blocks: u64) -> Vec<Level> {
    let mut sizes = Vec::new();
    let mut below = data_blocks;
    while below > 1 {
        below = below.div_ceil(PER_BLOCK);
        sizes.push(below);
    }
    // The top level comes first on disk: a level starts after every level above it.
    let mut levels = Vec::with_capacity(sizes.len());
    for (i, &blocks) in sizes.iter().enumerate() {
        let first = sizes[i + 1..].iter().sum();
        levels.push(Level { first, blocks });
    }
    levels
}

/// A tree computed over data in memory: the parameters (`hash_start_block` is the number
/// of data blocks, the tree right after the data) and the hash blocks to store there.
#[derive(Debug)]
pub struct Tree {
    /// The parameters.
    pub verity: Verity,
    /// Every hash block, as laid out on disk (top level first).
    pub blocks: Vec<u8>,
}

/// Computes the tree over `data`, whose last block is read as zero-padded to 4096 bytes.
pub fn hash_tree(data: &[u8], salt: [u8; 32]) -> Result<Tree> {
    ensure!(!data.is_empty(), "no data to protect: the image is empty");
    let mut padded_last = [0u8; BLOCK];
    let digests: Vec<u8> = data
        .chunks(BLOCK)
        .flat_map(|chunk| {
            let block = if chunk.len() == BLOCK {
                chunk
            } else {
                padded_last[..chunk.len()].copy_from_slice(chunk);
                &padded_last[..]
            };
            salted(&salt, block)
        })
        .collect();
    let data_blocks = data.len().div_ceil(BLOCK) as u64;

    // Each level: the digests of the level below, zero-padded to whole blocks.
    let mut stored: Vec<Vec<u8>> = Vec::new();
    let mut current = digests;
    while current.len() > DIGEST {
        current.resize(current.len().div_ceil(BLOCK) * BLOCK, 0);
        let above = current
            .chunks(BLOCK)
            .flat_map(|b| salted(&salt, b))
            .collect();
        stored.push(std::mem::replace(&mut current, above));
    }
    let root: [u8; 32] = current[..].try_into().context("the top digest")?;

    let geometry = levels(data_blocks);
    debug_assert_eq!(geometry.len(), stored.len());
    let blocks: Vec<u8> = stored.into_iter().rev().flatten().collect();
    debug_assert_eq!(
        blocks.len() as u64,
        geometry.iter().map(|l| l.blocks).sum::<u64>() * PER_BLOCK * DIGEST as u64
    );
    Ok(Tree {
        verity: Verity {
            data_blocks,
            hash_start_block: data_blocks,
            root,
            salt,
        },
        blocks,
    })
}

/// Pads the image at `path` with zeros to whole 4096-byte blocks, computes the tree over
/// it and appends the tree right after the data (`hash_start_block` = `data_blocks`).
pub fn append_hash_tree(path: &Path, salt: [u8; 32]) -> Result<Verity> {
    let mut data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let unpadded = data.len();
    data.resize(unpadded.div_ceil(BLOCK) * BLOCK, 0);
    let tree = hash_tree(&data, salt).with_context(|| path.display().to_string())?;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(&data[unpadded..])
        .and_then(|()| file.write_all(&tree.blocks))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("appending the hash tree to {}", path.display()))?;
    Ok(tree.verity)
}

/// A fresh salt: 32 bytes from /dev/urandom.
pub fn random_salt() -> Result<[u8; 32]> {
    use std::io::Read;
    let mut salt = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut salt))
        .context("reading 32 bytes from /dev/urandom")?;
    Ok(salt)
}

/// SHA-256 of the salt followed by `block` (format version 1).
pub fn salted(salt: &[u8; 32], block: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bulkhead_qubeconfig::verity::Hex(bytes).to_string()
}

/// 32 bytes from 64 hexadecimal digits.
pub fn parse_hex32(text: &str) -> Result<[u8; 32]> {
    bulkhead_qubeconfig::verity::hex32(text)
        .with_context(|| format!("expected 64 hexadecimal digits, found {text:?}"))
}

#[cfg(test)]
#[path = "verity_tests.rs"]
mod tests;
