//! The PPM parser against good, malformed and random input; the pixel helpers; PNG output.

use super::*;
use proptest::prelude::*;

/// A 3x2 image whose pixels are all different.
fn sample() -> Image {
    let rgb = (0u8..18).map(|i| i * 10).collect();
    Image::new(3, 2, rgb).unwrap()
}

fn error(bytes: &[u8]) -> String {
    format!("{:#}", Image::parse_ppm(bytes).unwrap_err())
}

#[test]
fn parses_what_qemu_writes() {
    // QEMU's screendump header: "P6\n<w> <h>\n255\n".
    let mut ppm = b"P6\n2 1\n255\n".to_vec();
    ppm.extend_from_slice(&[1, 2, 3, 250, 251, 252]);
    let image = Image::parse_ppm(&ppm).unwrap();
    assert_eq!((image.width(), image.height()), (2, 1));
    assert_eq!(image.pixel(0, 0), [1, 2, 3]);
    assert_eq!(image.pixel(1, 0), [250, 251, 252]);
}

#[test]
fn parses_comments_and_any_whitespace_and_scales_small_maxval() {
    let mut ppm = b"P6 # made by hand\n 1\t# width\n1\r\n# maxval next\n15 ".to_vec();
    ppm.extend_from_slice(&[0, 15, 5]);
    let image = Image::parse_ppm(&ppm).unwrap();
    assert_eq!(image.pixel(0, 0), [0, 255, 85]);
}

#[test]
fn rejects_malformed_files_with_reasons() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "not a binary PPM"),
        (b"P3\n1 1\n255\n", "not a binary PPM"),
        (
            b"P6",
            "expected the width at byte 2, found the end of the file",
        ),
        (b"P6\nx 1\n255\n", "expected the width at byte 3, found 'x'"),
        (b"P6\n1 -1\n255\n", "expected the height"),
        (b"P6\n1 1", "expected the maxval"),
        (b"P6\n0 1\n255\n", "width 0 is not in 1..=16384"),
        (b"P6\n1 99999\n255\n", "height 99999 is not in"),
        (b"P6\n99999999999 1\n255\n", "the width is too large"),
        (b"P6\n1 1\n65535\n", "16-bit samples are not supported"),
        (b"P6\n1 1\n0\n", "maxval 0 is not in"),
        (b"P6\n1 1\n255", "does not end in a whitespace byte"),
        (b"P6\n1 1\n255x", "does not end in a whitespace byte"),
        (
            b"P6\n2 1\n255\n\x01\x02\x03",
            "truncated PPM: 3 of the 6 sample bytes",
        ),
        (
            b"P6\n1 1\n255\n\x01\x02\x03\x04",
            "1 bytes after the 3 sample bytes",
        ),
        (
            b"P6\n1 1\n7\n\x01\x08\x03",
            "sample 8 at byte 1 exceeds maxval 7",
        ),
    ];
    for (bytes, reason) in cases {
        let message = error(bytes);
        assert!(
            message.contains(reason),
            "{:?}: {message:?} does not say {reason:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn new_checks_the_length() {
    assert!(Image::new(2, 2, vec![0; 11]).is_err());
    assert_eq!(
        Image::new(2, 2, vec![7; 12]).unwrap(),
        Image::filled(2, 2, [7; 3])
    );
}

#[test]
fn crops_and_finds_regions() {
    let image = sample();
    let right = image.crop(Rect::new(1, 0, 2, 2)).unwrap();
    assert_eq!(right.pixel(0, 0), image.pixel(1, 0));
    assert_eq!(right.pixel(1, 1), image.pixel(2, 1));
    assert!(image.region_equals(1, 0, &right));
    assert!(!image.region_equals(0, 0, &right));
    // Not inside: an error from crop, false from region_equals, never a panic.
    assert!(image.crop(Rect::new(2, 0, 2, 1)).is_err());
    assert!(image.crop(Rect::new(u32::MAX, 0, 2, 1)).is_err());
    assert!(!image.region_equals(2, 1, &right));
    assert!(image.region_equals(0, 0, &image));
}

#[test]
fn counts_pixels_of_a_colour_clipped_to_the_image() {
    let mut rgb = Image::filled(4, 4, [0, 0, 255]).rgb().to_vec();
    rgb[..3].copy_from_slice(&[255, 0, 0]); // (0, 0) red
    let image = Image::new(4, 4, rgb).unwrap();
    assert_eq!(image.count_pixels(image.bounds(), [0, 0, 255]), 15);
    assert_eq!(image.count_pixels(Rect::new(0, 0, 2, 2), [255, 0, 0]), 1);
    assert_eq!(
        image.count_pixels(Rect::new(2, 2, 100, u32::MAX), [0, 0, 255]),
        4
    );
    assert_eq!(image.count_pixels(Rect::new(9, 9, 1, 1), [0, 0, 255]), 0);
}

#[test]
#[should_panic(expected = "pixel (3, 0) is outside a 3x2 image")]
fn pixel_outside_panics_with_a_message() {
    sample().pixel(3, 0);
}

#[test]
fn writes_a_png_that_reads_back() {
    let dir = std::env::temp_dir().join(format!("xtask-image-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sample.png");
    let image = sample();
    image.write_png(&path).unwrap();
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (3, 2));
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(&buf[..info.buffer_size()], image.rgb());
    let _ = std::fs::remove_dir_all(dir);
}

fn any_image() -> impl Strategy<Value = Image> {
    (1u32..12, 1u32..12).prop_flat_map(|(w, h)| {
        proptest::collection::vec(any::<u8>(), (w * h * 3) as usize)
            .prop_map(move |rgb| Image::new(w, h, rgb).unwrap())
    })
}

proptest! {
    #[test]
    fn ppm_round_trips(image in any_image()) {
        prop_assert_eq!(Image::parse_ppm(&image.to_ppm()).unwrap(), image);
    }

    #[test]
    fn every_truncation_or_extension_is_an_error(image in any_image(), cut in any::<usize>(), extra in 1usize..4) {
        let ppm = image.to_ppm();
        prop_assert!(Image::parse_ppm(&ppm[..cut % ppm.len()]).is_err());
        let mut longer = ppm.clone();
        longer.extend(std::iter::repeat_n(0u8, extra));
        prop_assert!(Image::parse_ppm(&longer).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = Image::parse_ppm(&bytes);
    }

    #[test]
    fn arbitrary_headers_never_panic(header in "P6[ #\n0-9a]{0,24}", tail in proptest::collection::vec(any::<u8>(), 0..32)) {
        let mut bytes = header.into_bytes();
        bytes.extend(tail);
        let _ = Image::parse_ppm(&bytes);
    }

    #[test]
    fn a_cropped_part_is_found_where_it_was_cut(image in any_image(), x in 0u32..12, y in 0u32..12) {
        let (x, y) = (x % image.width(), y % image.height());
        let part = image.crop(Rect::new(x, y, image.width() - x, image.height() - y)).unwrap();
        prop_assert!(image.region_equals(x, y, &part));
        prop_assert_eq!(part.pixel(0, 0), image.pixel(x, y));
    }
}
