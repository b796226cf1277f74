//! Format detection of stored images and labels: from the file name first (the imaging
//! crate's suffixes and `.zip`), then from the first bytes
//! (NIfTI-1/2 header size in either byte order, gzip that inflates to a NIfTI header,
//! MetaImage text keys, the `NRRD000` magic, the PNG signature, `DICM` at offset 128, a zip
//! local-file header), else `unknown`.

use std::io::Read;

/// How many leading bytes [`from_bytes`] looks at; callers keep at most this many.
pub const SNIFF_BYTES: usize = 4096;

/// The format names of the contract (`Item.format`).
pub const FORMATS: &[&str] = &[
    "nifti",
    "nifti-gz",
    "mha",
    "mhd",
    "nrrd",
    "png",
    "dicom",
    "dicom-zip",
    "unknown",
];

/// The format a file name implies, if any (case-insensitive suffix match on the image
/// suffixes of [`aiaa_imaging::io::IMAGE_SUFFIXES`], and `.zip` for a DICOM series).
pub fn from_name(name: &str) -> Option<&'static str> {
    use aiaa_imaging::io::{Format, format_from_name};
    if name.to_ascii_lowercase().ends_with(".zip") {
        return Some("dicom-zip");
    }
    format_from_name(std::path::Path::new(name)).map(|f| match f {
        Format::NiftiGz => "nifti-gz",
        Format::Nifti => "nifti",
        Format::Mha => "mha",
        Format::Mhd => "mhd",
        Format::Nrrd => "nrrd",
        Format::Png => "png",
        Format::Dicom => "dicom",
    })
}

fn nifti_header_size(bytes: &[u8]) -> bool {
    let Some(first) = bytes.get(..4) else {
        return false;
    };
    let first: [u8; 4] = [first[0], first[1], first[2], first[3]];
    let le = i32::from_le_bytes(first);
    let be = i32::from_be_bytes(first);
    matches!(le, 348 | 540) || matches!(be, 348 | 540)
}

/// The format the leading bytes of a file show, or `"unknown"`.
pub fn from_bytes(bytes: &[u8]) -> &'static str {
    if nifti_header_size(bytes) {
        return "nifti";
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        // gzip: only a NIfTI header inside makes it a format we know.
        let mut inflated = [0u8; 4];
        let mut decoder = flate2::read::GzDecoder::new(bytes);
        if decoder.read_exact(&mut inflated).is_ok() && nifti_header_size(&inflated) {
            return "nifti-gz";
        }
        return "unknown";
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return "png";
    }
    if bytes.starts_with(b"NRRD000") {
        return "nrrd";
    }
    if bytes.get(128..132) == Some(b"DICM") {
        return "dicom";
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return "dicom-zip";
    }
    if bytes.starts_with(b"ObjectType") || bytes.starts_with(b"NDims") {
        return metaimage_kind(bytes);
    }
    "unknown"
}

/// `mha` when the header keeps its data in the same file (`ElementDataFile = LOCAL`, or no
/// data-file line in the bytes seen), `mhd` when it names a separate data file.
fn metaimage_kind(bytes: &[u8]) -> &'static str {
    let text = String::from_utf8_lossy(bytes);
    for line in text.lines() {
        let mut parts = line.splitn(2, '=');
        let key = parts.next().unwrap_or("").trim();
        if key == "ElementDataFile" {
            let value = parts.next().unwrap_or("").trim();
            return if value.eq_ignore_ascii_case("LOCAL") {
                "mha"
            } else {
                "mhd"
            };
        }
    }
    "mha"
}

/// The name's format, else the bytes' format.
pub fn detect(name: &str, leading: &[u8]) -> &'static str {
    from_name(name).unwrap_or_else(|| from_bytes(leading))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn names() {
        assert_eq!(from_name("a/b.NII.GZ"), Some("nifti-gz"));
        assert_eq!(from_name("b.nii"), Some("nifti"));
        assert_eq!(from_name("x.mha"), Some("mha"));
        assert_eq!(from_name("x.mhd"), Some("mhd"));
        assert_eq!(from_name("x.NRRD"), Some("nrrd"));
        assert_eq!(from_name("x.nhdr"), Some("nrrd"));
        assert_eq!(from_name("x.png"), Some("png"));
        assert_eq!(from_name("s/1.dcm"), Some("dicom"));
        assert_eq!(from_name("series.zip"), Some("dicom-zip"));
        assert_eq!(from_name("noext"), None);
        assert_eq!(detect("x.nii", b"garbage"), "nifti");
    }

    #[test]
    fn bytes() {
        let mut hdr = vec![0u8; 352];
        hdr[..4].copy_from_slice(&348i32.to_le_bytes());
        assert_eq!(from_bytes(&hdr), "nifti");
        hdr[..4].copy_from_slice(&348i32.to_be_bytes());
        assert_eq!(from_bytes(&hdr), "nifti");
        hdr[..4].copy_from_slice(&540i32.to_le_bytes());
        assert_eq!(from_bytes(&hdr), "nifti");

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&hdr).unwrap();
        assert_eq!(from_bytes(&gz.finish().unwrap()), "nifti-gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"just some text").unwrap();
        assert_eq!(from_bytes(&gz.finish().unwrap()), "unknown");

        assert_eq!(from_bytes(b"\x89PNG\r\n\x1a\n...."), "png");
        assert_eq!(from_bytes(b"NRRD0004\ntype: short\n"), "nrrd");
        let mut dcm = vec![0u8; 200];
        dcm[128..132].copy_from_slice(b"DICM");
        assert_eq!(from_bytes(&dcm), "dicom");
        assert_eq!(from_bytes(b"PK\x03\x04rest"), "dicom-zip");
        assert_eq!(
            from_bytes(b"ObjectType = Image\nNDims = 3\nElementDataFile = LOCAL\n"),
            "mha"
        );
        assert_eq!(from_bytes(b"NDims = 3\nElementDataFile = img.raw\n"), "mhd");
        assert_eq!(from_bytes(b"hello"), "unknown");
        assert_eq!(from_bytes(b""), "unknown");
    }
}
