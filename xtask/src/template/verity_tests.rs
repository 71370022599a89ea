//! Tests of the hash tree: small trees checked by hand, the geometry of larger ones, and
//! golden values from the real `veritysetup`.

use super::*;

const SALT: [u8; 32] = [0xaa; 32];

/// Deterministic data: byte `i` is `i * 31 mod 251`.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn block(data: &[u8], i: usize) -> &[u8] {
    &data[i * BLOCK..(i + 1) * BLOCK]
}

#[test]
fn one_block_has_no_hash_blocks_and_its_digest_is_the_root() {
    let data = vec![b'x'; BLOCK];
    let tree = hash_tree(&data, SALT).unwrap();
    assert!(tree.blocks.is_empty());
    assert_eq!(tree.verity.root, salted(&SALT, &data));
    // `veritysetup format --format=1 --hash=sha256 --data-block-size=4096
    // --hash-block-size=4096 --no-superblock --salt=aa..aa one hash` over 4096 bytes of 'x'
    // (cryptsetup 2.6.1): "Hash blocks: 0", this root hash.
    assert_eq!(
        hex(&tree.verity.root),
        "b3934936271a40ba6ad827d56a8b938425a0f2251b73c4c0589600bd04e85da8"
    );
    assert_eq!(tree.verity.data_blocks, 1);
    assert_eq!(tree.verity.hash_start_block, 1);
}

#[test]
fn two_blocks_make_one_hash_block_whose_digest_is_the_root() {
    let data = pattern(2 * BLOCK);
    let tree = hash_tree(&data, SALT).unwrap();
    let mut expected = Vec::new();
    expected.extend(salted(&SALT, block(&data, 0)));
    expected.extend(salted(&SALT, block(&data, 1)));
    expected.resize(BLOCK, 0);
    assert_eq!(tree.blocks, expected);
    assert_eq!(tree.verity.root, salted(&SALT, &expected));
}

#[test]
fn a_short_last_block_is_hashed_zero_padded() {
    let data = pattern(BLOCK + 5);
    let mut padded = data.clone();
    padded.resize(2 * BLOCK, 0);
    let short = hash_tree(&data, SALT).unwrap();
    let full = hash_tree(&padded, SALT).unwrap();
    assert_eq!(short.verity, full.verity);
    assert_eq!(short.blocks, full.blocks);
}

#[test]
fn nothing_to_hash_is_an_error() {
    assert!(hash_tree(&[], SALT).is_err());
}

#[test]
fn levels_lie_top_first() {
    let l = |first, blocks| Level { first, blocks };
    assert_eq!(levels(1), []);
    assert_eq!(levels(2), [l(0, 1)]);
    assert_eq!(levels(128), [l(0, 1)]);
    // 129 blocks: level 0 needs two hash blocks, so a level 1 of one block sits above it,
    // first on disk.
    assert_eq!(levels(129), [l(1, 2), l(0, 1)]);
    assert_eq!(levels(16_384), [l(1, 128), l(0, 1)]);
    assert_eq!(levels(16_385), [l(3, 129), l(1, 2), l(0, 1)]);
    assert_eq!(levels(128 * 128 * 128 + 1).len(), 4);
}

#[test]
fn level_count_matches_the_kernels_rule() {
    // dm-verity: the smallest L with (data_blocks - 1) >> (7 * L) == 0.
    for d in (1..40_000u64)
        .step_by(97)
        .chain([127, 128, 129, 16_383, 16_384, 16_385])
    {
        let mut kernel = 0;
        while (d - 1) >> (7 * kernel) != 0 {
            kernel += 1;
        }
        assert_eq!(levels(d).len(), kernel, "{d} data blocks");
    }
}

#[test]
fn a_two_level_tree_stores_each_level_where_levels_says() {
    let data = pattern(129 * BLOCK);
    let tree = hash_tree(&data, SALT).unwrap();
    assert_eq!(tree.blocks.len(), 3 * BLOCK);
    let top = block(&tree.blocks, 0);
    assert_eq!(tree.verity.root, salted(&SALT, top));
    // Level 0 at blocks 1 and 2: the digests of data blocks 0..128 and 128.
    let level0 = &tree.blocks[BLOCK..];
    assert_eq!(level0[..DIGEST], salted(&SALT, block(&data, 0)));
    assert_eq!(
        level0[127 * DIGEST..128 * DIGEST],
        salted(&SALT, block(&data, 127))
    );
    assert_eq!(
        level0[BLOCK..BLOCK + DIGEST],
        salted(&SALT, block(&data, 128))
    );
    assert!(level0[BLOCK + DIGEST..].iter().all(|&b| b == 0));
    // Level 1, the top: the digests of level 0's two blocks, then zeros.
    assert_eq!(top[..DIGEST], salted(&SALT, block(level0, 0)));
    assert_eq!(top[DIGEST..2 * DIGEST], salted(&SALT, block(level0, 1)));
    assert!(top[2 * DIGEST..].iter().all(|&b| b == 0));
}

/// The golden values come from cryptsetup 2.6.1 (Debian 12) over `pattern(3 MiB)`:
/// ```sh
/// python3 -c "open('data','wb').write(bytes((i*31)%251 for i in range(3*1024*1024)))"
/// touch hash
/// veritysetup format --format=1 --hash=sha256 --data-block-size=4096 \
///     --hash-block-size=4096 --no-superblock \
///     --salt=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f data hash
/// sha256sum hash
/// ```
/// It printed "Data blocks: 768", "Hash blocks: 7" and the root hash below; the second value
/// is `sha256sum` of the 28672-byte hash file it wrote.
const GOLDEN_ROOT: &str = "58259f7bd5f1e6a3c7218e39ec0fedae5bf37f67db668093d4c2bdf23229d3be";
const GOLDEN_HASH_FILE_SHA256: &str =
    "80117f890b39290bf9f444b92b229f56cd483e3a7304643c41c57e7d46064dc5";

fn golden_salt() -> [u8; 32] {
    core::array::from_fn(|i| i as u8)
}

#[test]
fn matches_veritysetup() {
    let tree = hash_tree(&pattern(3 << 20), golden_salt()).unwrap();
    assert_eq!(tree.verity.data_blocks, 768);
    assert_eq!(tree.blocks.len(), 7 * BLOCK);
    assert_eq!(hex(&tree.verity.root), GOLDEN_ROOT);
    assert_eq!(hex(&Sha256::digest(&tree.blocks)), GOLDEN_HASH_FILE_SHA256);
}

#[test]
fn appends_the_tree_after_the_data() {
    let dir = std::env::temp_dir().join(format!("bulkhead-verity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("image");
    let data = pattern(3 << 20);
    std::fs::write(&path, &data).unwrap();
    let verity = append_hash_tree(&path, golden_salt()).unwrap();
    let written = std::fs::read(&path).unwrap();
    // A file that ends inside a block is padded with zeros first.
    let short = dir.join("short");
    std::fs::write(&short, pattern(BLOCK + 5)).unwrap();
    let short_verity = append_hash_tree(&short, SALT).unwrap();
    let short_written = std::fs::read(&short).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    assert_eq!((verity.data_blocks, verity.hash_start_block), (768, 768));
    assert_eq!(hex(&verity.root), GOLDEN_ROOT);
    assert_eq!(written.len(), (768 + 7) * BLOCK);
    assert_eq!(written[..data.len()], data[..]);
    assert_eq!(
        hex(&Sha256::digest(&written[768 * BLOCK..])),
        GOLDEN_HASH_FILE_SHA256
    );

    let mut padded = pattern(BLOCK + 5);
    padded.resize(2 * BLOCK, 0);
    let expected = hash_tree(&padded, SALT).unwrap();
    assert_eq!(short_verity, expected.verity);
    assert_eq!(short_written[..2 * BLOCK], padded[..]);
    assert_eq!(short_written[2 * BLOCK..], expected.blocks[..]);
}

#[test]
fn table_and_command_line() {
    let v = Verity {
        data_blocks: 768,
        hash_start_block: 768,
        root: [0x11; 32],
        salt: golden_salt(),
    };
    let root = "11".repeat(32);
    let salt = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    assert_eq!(
        v.table_args("/dev/vdb").to_string(),
        format!("1 /dev/vdb /dev/vdb 4096 4096 768 768 sha256 {root} {salt}")
    );
    assert_eq!(v.to_string(), format!("768:768:{root}:{salt}"));
}

#[test]
fn hex_round_trips_and_refuses_bad_text() {
    let salt = golden_salt();
    assert_eq!(parse_hex32(&hex(&salt)).unwrap(), salt);
    assert_eq!(parse_hex32(&"AB".repeat(32)).unwrap(), [0xab; 32]);
    assert!(parse_hex32("00").is_err());
    assert!(parse_hex32(&"zz".repeat(32)).is_err());
    assert!(parse_hex32(&"0".repeat(65)).is_err());
}
