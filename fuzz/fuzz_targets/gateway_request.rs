//! Fuzz target: the gateway's request parsing must answer errors, never panic, loop or blow
//! up memory, on arbitrary input: the streaming multipart parser (fed in arbitrary pieces,
//! which must give the same parts as one piece), the params of every endpoint (the model
//! endpoints' checks, the polygon endpoints' typed lenient reading), and the whole of
//! `/v1/fixpolygon` and `/v1/mask2polygon` after the form on a small image.
//!
//! Input: byte 0 picks the piece size, byte 1 the mode (bit 0: the rest is a multipart
//! body, else a params JSON text), byte 2 the image size; the rest is the body or the text.
#![no_main]
use aiaa_gateway::form::{Data, Part};
use aiaa_gateway::multipart::{self, Event, PartHead, Parser};
use aiaa_gateway::routes::infer::{Endpoint, validate};
use aiaa_gateway::routes::polygons::{Limits, contours_json, fix_polygons};
use aiaa_imaging::{Geometry, Volume, Voxels};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [&str; 3] = [
    "multipart/form-data; boundary=----------lImIt_of_THE_fIle_eW_$",
    "multipart/form-data; boundary=\"b\"",
    "multipart/form-data; boundary=xyz",
];

/// A small PNG slice or NIfTI volume for the polygon endpoints.
fn image(size: u8) -> Part {
    let w = 1 + (size as usize % 24);
    let h = 1 + (size as usize / 24 % 24);
    let nz = if size & 0x80 != 0 { 3 } else { 1 };
    let vol = Volume::scalar([w, h, nz], Geometry::default(), Voxels::U8(vec![1; w * h * nz])).unwrap();
    let (name, bytes) = if nz == 1 {
        ("slice.png", aiaa_imaging::png::to_bytes(&vol).unwrap())
    } else {
        ("vol.nii", aiaa_imaging::nifti::to_bytes(&vol, false).unwrap())
    };
    Part {
        head: PartHead {
            name: "image".into(),
            filename: Some(name.into()),
            content_type: None,
        },
        data: Data::Memory(Bytes::from(bytes)),
    }
}

fn params(text: &[u8], size: u8) {
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if let Ok(map) = aiaa_gateway::params::parse(Some(text)) {
        for endpoint in [Endpoint::Dextr3d, Endpoint::Deepgrow, Endpoint::Segmentation] {
            let _ = validate(endpoint, &map);
        }
    }
    let bytes = Some(Bytes::copy_from_slice(text.as_bytes()));
    let limits = Limits {
        max_vertices: 10_000,
        max_image_bytes: 1 << 20,
    };
    let _ = fix_polygons(&bytes, &image(size), limits);
}

fn mask(bits: &[u8], size: u8) {
    let w = 1 + (size as usize % 32);
    let h = 1 + (size as usize / 32 % 8);
    let voxels: Vec<u8> = (0..w * h)
        .map(|i| bits.get(i / 8).map_or(0, |b| (b >> (i % 8)) & 1))
        .collect();
    let vol = Volume::scalar([w, h, 1], Geometry::default(), Voxels::U8(voxels)).unwrap();
    let step = 1 + (size as usize % 3);
    let _ = contours_json(&vol, step, 1000);
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (piece, mode, size, rest) = (data[0], data[1], data[2], &data[3..]);
    if mode & 1 == 0 {
        params(rest, size);
        mask(rest, size);
        return;
    }
    let content_type = CONTENT_TYPES[(mode as usize >> 1) % CONTENT_TYPES.len()];
    let whole = multipart::parse(content_type, rest);
    let mut parser = Parser::new(content_type).unwrap();
    let mut events = Vec::new();
    let mut pieces = Ok(());
    for chunk in rest.chunks(1 + piece as usize) {
        pieces = parser.feed(chunk, &mut events);
        if pieces.is_err() {
            break;
        }
    }
    let pieces = pieces.and_then(|()| parser.finish(&mut events));
    // Same parts, or the same refusal, whatever the piece sizes.
    match (&whole, pieces) {
        (Ok(parts), Ok(())) => {
            let again = multipart::collect(std::mem::take(&mut events));
            assert_eq!(parts.len(), again.len());
            for (a, b) in parts.iter().zip(&again) {
                assert_eq!(a.head, b.head);
                assert_eq!(a.data, b.data);
            }
        }
        (Err(a), Err(b)) => assert_eq!(a, &b),
        (a, b) => panic!("whole: {:?}, in pieces: {b:?}", a.as_ref().map(Vec::len)),
    }
    assert!(events.iter().all(|e| !matches!(e, Event::Data(d) if d.is_empty())));
    if let Ok(parts) = whole {
        for part in parts.iter().filter(|p| p.head.name == "params") {
            params(&part.data, size);
        }
    }
});
