//! Length pre-scan of a DICOM file, run before its bytes reach dicom-object.
//!
//! dicom-object 0.10 reserves an element's declared value length before reading the value
//! (`read_value_ob`, fragment items, and `Vec::resize` in the file meta group), so a file of
//! a few hundred bytes that declares a 4 GB element makes it allocate 4 GB (found by the
//! `dicom` fuzz target). This module walks the same structure dicom-object's parser walks
//! and refuses the file when a value's defined length exceeds the bytes that are actually
//! left, so every allocation dicom-object then makes is bounded by the file size.
//!
//! What is walked (mirroring dicom-parser 0.10's `DataSetReader`):
//!
//! * the preamble (`DICM` at byte 128, or at byte 0), then the file meta group (explicit VR
//!   little endian, elements read while fewer than `(0002,0000)` bytes were consumed), which
//!   also gives the transfer syntax;
//! * the data set in explicit VR little endian, explicit VR big endian or implicit VR little
//!   endian (VRs from the standard dictionary, as dicom-parser does; Pixel Data and Overlay
//!   Data are OW); a deflated data set is walked through a streaming inflater;
//! * sequences (VR SQ, or any undefined-length element) with defined or undefined length,
//!   their items (defined or undefined length, ended by their length or an item delimiter),
//!   nested up to [`MAX_DEPTH`] sequences;
//! * encapsulated Pixel Data (undefined length): the basic offset table and every fragment.
//!
//! Values are skipped, never copied: the walk reads only element headers (a few bytes on
//! the stack), the transfer syntax UID (at most 64 bytes, on the stack) and, for a deflated
//! data set, inflates into a fixed buffer. Where the structure merely ends early (truncated
//! file, garbage after the data) the walk stops without an error: dicom-object then fails or
//! stops on its own without reading a declared length, so only lengths that would be
//! trusted are judged. Structures dicom-object refuses anyway (a fragment of undefined
//! length, an item delimiter where an item is expected, an item overrunning its declared
//! length) are refused here too, so the walk never loses track of where dicom-object is.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

use crate::{ImagingError, Result};

/// Deepest sequence nesting accepted (real files nest a handful of levels; dicom-object
/// builds nested sequences recursively).
pub const MAX_DEPTH: u32 = 64;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_END: (u16, u16) = (0xFFFE, 0xE00D);
const SEQ_END: (u16, u16) = (0xFFFE, 0xE0DD);
const PIXEL_DATA: (u16, u16) = (0x7FE0, 0x0010);

/// Checks the DICOM file held in `bytes` (as given to `OpenFileOptions::from_reader`).
/// `until`: stop at the first top-level element whose tag is at or after it, as
/// `OpenFileOptions::read_until` does. Errors name `path`.
pub fn check_bytes(path: &Path, bytes: &[u8], until: Option<Tag>) -> Result<()> {
    let Some(start) = meta_start(&bytes[..bytes.len().min(132)]) else {
        return Ok(());
    };
    let mut input = SliceInput {
        bytes,
        pos: start as usize,
    };
    match walk_file(&mut input, until, |rest| {
        Box::new(StreamInput::new(flate2::read::DeflateDecoder::new(
            &bytes[rest..],
        )))
    }) {
        Ok(()) => Ok(()),
        Err(f) => Err(f.into_error(path)),
    }
}

/// Checks the DICOM file at `path` (as opened by `OpenFileOptions::open_file`), reading
/// element headers only and seeking over values.
pub fn check_file(path: &Path, until: Option<Tag>) -> Result<()> {
    let file = File::open(path).map_err(|e| ImagingError::io(path, e))?;
    let len = file.metadata().map_err(|e| ImagingError::io(path, e))?.len();
    let mut reader = BufReader::new(file);
    let mut head = [0u8; 132];
    let n = (len as usize).min(head.len());
    reader
        .read_exact(&mut head[..n])
        .map_err(|e| ImagingError::io(path, e))?;
    let Some(start) = meta_start(&head[..n]) else {
        return Ok(());
    };
    reader
        .seek(SeekFrom::Start(start))
        .map_err(|e| ImagingError::io(path, e))?;
    let mut input = FileInput {
        reader,
        pos: start,
        len,
    };
    let res = walk_file(&mut input, until, |rest| {
        // The inflater reads on from a second handle positioned at the data set.
        let Ok(mut f) = File::open(path) else {
            return Box::new(StreamInput::new(io::empty()));
        };
        if f.seek(SeekFrom::Start(rest as u64)).is_err() {
            return Box::new(StreamInput::new(io::empty()));
        }
        Box::new(StreamInput::new(flate2::read::DeflateDecoder::new(
            BufReader::new(f),
        )))
    });
    match res {
        Ok(()) => Ok(()),
        Err(Finding::Io(e)) => Err(ImagingError::io(path, e)),
        Err(f) => Err(f.into_error(path)),
    }
}

/// Why a file is refused.
#[derive(Debug)]
enum Finding {
    /// A value's defined length exceeds the bytes left (`left` = `None`: the inflated data
    /// set ended first).
    TooLong {
        tag: (u16, u16),
        len: u32,
        at: u64,
        left: Option<u64>,
    },
    /// A structure dicom-object refuses too.
    Malformed { at: u64, what: &'static str },
    /// Sequences nested deeper than [`MAX_DEPTH`].
    TooDeep { at: u64 },
    /// Reading the file failed.
    Io(io::Error),
}

struct TagFmt((u16, u16));

impl fmt::Display for TagFmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({:04X},{:04X})", self.0.0, self.0.1)
    }
}

impl Finding {
    fn into_error(self, path: &Path) -> ImagingError {
        let reason = match self {
            Finding::TooLong { tag, len, at, left } => {
                let what = if tag == ITEM {
                    " (item / pixel data fragment)"
                } else {
                    ""
                };
                match left {
                    Some(left) => format!(
                        "element {}{what} at byte {at} declares a value of {len} bytes, but only \
                         {left} bytes follow (corrupt or truncated file)",
                        TagFmt(tag)
                    ),
                    None => format!(
                        "element {}{what} at byte {at} of the inflated data set declares a value \
                         of {len} bytes, but the data set ends first (corrupt or truncated file)",
                        TagFmt(tag)
                    ),
                }
            }
            Finding::Malformed { at, what } => format!("malformed data set at byte {at}: {what}"),
            Finding::TooDeep { at } => {
                format!("sequences nested deeper than {MAX_DEPTH} levels at byte {at}")
            }
            Finding::Io(e) => format!("read error: {e}"),
        };
        ImagingError::format(path, "DICOM", reason)
    }
}

type Walk<T> = std::result::Result<T, Finding>;

/// A forward-only byte source.
trait Input {
    /// Offset of the next byte.
    fn pos(&self) -> u64;
    /// Bytes left, when known without reading them.
    fn left(&self) -> Option<u64>;
    /// Fills `buf`; `Ok(false)` when the data ends first.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<bool>;
    /// Skips `n` bytes; `Ok(false)` when the data ends first.
    fn skip(&mut self, n: u64) -> io::Result<bool>;
}

struct SliceInput<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Input for SliceInput<'_> {
    fn pos(&self) -> u64 {
        self.pos as u64
    }
    fn left(&self) -> Option<u64> {
        Some((self.bytes.len() - self.pos) as u64)
    }
    fn read(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        match self.bytes.get(self.pos..self.pos + buf.len()) {
            Some(src) => {
                buf.copy_from_slice(src);
                self.pos += buf.len();
                Ok(true)
            }
            None => Ok(false),
        }
    }
    fn skip(&mut self, n: u64) -> io::Result<bool> {
        if n > (self.bytes.len() - self.pos) as u64 {
            return Ok(false);
        }
        self.pos += n as usize;
        Ok(true)
    }
}

struct FileInput {
    reader: BufReader<File>,
    pos: u64,
    len: u64,
}

impl Input for FileInput {
    fn pos(&self) -> u64 {
        self.pos
    }
    fn left(&self) -> Option<u64> {
        Some(self.len.saturating_sub(self.pos))
    }
    fn read(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        if (buf.len() as u64) > self.len.saturating_sub(self.pos) {
            return Ok(false);
        }
        self.reader.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(true)
    }
    fn skip(&mut self, n: u64) -> io::Result<bool> {
        if n > self.len.saturating_sub(self.pos) {
            return Ok(false);
        }
        // n <= file length < i64::MAX
        self.reader.seek_relative(n as i64)?;
        self.pos += n;
        Ok(true)
    }
}

/// A stream of unknown length (the inflated data set); decoding errors count as its end.
struct StreamInput<R> {
    reader: R,
    pos: u64,
}

impl<R: Read> StreamInput<R> {
    fn new(reader: R) -> Self {
        StreamInput { reader, pos: 0 }
    }
}

impl<R: Read> Input for StreamInput<R> {
    fn pos(&self) -> u64 {
        self.pos
    }
    fn left(&self) -> Option<u64> {
        None
    }
    fn read(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let ok = self.reader.read_exact(buf).is_ok();
        if ok {
            self.pos += buf.len() as u64;
        }
        Ok(ok)
    }
    fn skip(&mut self, n: u64) -> io::Result<bool> {
        // io::copy uses a stack buffer.
        let got = io::copy(&mut (&mut self.reader).take(n), &mut io::sink()).unwrap_or(0);
        self.pos += got;
        Ok(got == n)
    }
}

impl<I: Input + ?Sized> Input for Box<I> {
    fn pos(&self) -> u64 {
        (**self).pos()
    }
    fn left(&self) -> Option<u64> {
        (**self).left()
    }
    fn read(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        (**self).read(buf)
    }
    fn skip(&mut self, n: u64) -> io::Result<bool> {
        (**self).skip(n)
    }
}

/// How the data set is encoded.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Syntax {
    ExplicitLe,
    ExplicitBe,
    ImplicitLe,
}

/// Transfer syntax UID -> encoding of the data set and whether it is deflated, as in
/// dicom-transfer-syntax-registry 0.10. Unknown UIDs are refused by dicom-object; walking
/// them as explicit VR little endian is harmless.
fn syntax_of(uid: &[u8]) -> (Syntax, bool) {
    let end = uid
        .iter()
        .rposition(|&b| b != 0 && !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    match &uid[..end] {
        b"1.2.840.10008.1.2" => (Syntax::ImplicitLe, false),
        b"1.2.840.10008.1.2.2" => (Syntax::ExplicitBe, false),
        b"1.2.840.10008.1.2.1.99" | b"1.2.840.10008.1.2.4.95" | b"1.2.840.10008.1.2.4.205" => {
            (Syntax::ExplicitLe, true)
        }
        _ => (Syntax::ExplicitLe, false),
    }
}

/// One element header.
#[derive(Debug, Clone, Copy)]
struct Header {
    tag: (u16, u16),
    /// Offset of the header.
    at: u64,
    sequence: bool,
    len: u32,
    /// Header size in bytes.
    size: u32,
}

/// Explicit-VR VRs whose length field is 16 bits (PS3.5 7.1.2).
fn short_length(vr: [u8; 2]) -> bool {
    matches!(
        &vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FL"
            | b"FD"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SS"
            | b"ST"
            | b"TM"
            | b"UI"
            | b"UL"
            | b"US"
    )
}

struct Walker<I> {
    input: I,
    syntax: Syntax,
}

impl<I: Input> Walker<I> {
    fn u16(&self, b: [u8; 2]) -> u16 {
        match self.syntax {
            Syntax::ExplicitBe => u16::from_be_bytes(b),
            _ => u16::from_le_bytes(b),
        }
    }
    fn u32(&self, b: [u8; 4]) -> u32 {
        match self.syntax {
            Syntax::ExplicitBe => u32::from_be_bytes(b),
            _ => u32::from_le_bytes(b),
        }
    }

    fn read<const N: usize>(&mut self) -> Walk<Option<[u8; N]>> {
        let mut buf = [0u8; N];
        Ok(self.input.read(&mut buf).map_err(Finding::Io)?.then_some(buf))
    }

    /// Tag and 32-bit length (item headers, and every header in implicit VR).
    fn tag_len(&mut self) -> Walk<Option<((u16, u16), u32)>> {
        let Some(b) = self.read::<8>()? else {
            return Ok(None);
        };
        let tag = (self.u16([b[0], b[1]]), self.u16([b[2], b[3]]));
        Ok(Some((tag, self.u32([b[4], b[5], b[6], b[7]]))))
    }

    /// Next element header; `None` where the data ends.
    fn header(&mut self) -> Walk<Option<Header>> {
        let at = self.input.pos();
        if self.syntax == Syntax::ImplicitLe {
            let Some((tag, len)) = self.tag_len()? else {
                return Ok(None);
            };
            let sequence = tag != PIXEL_DATA
                && !(tag.0 >> 8 == 0x60 && tag.1 == 0x3000)
                && StandardDataDictionary
                    .by_tag(Tag(tag.0, tag.1))
                    .is_some_and(|e| e.vr().relaxed() == VR::SQ);
            return Ok(Some(Header {
                tag,
                at,
                sequence,
                len,
                size: 8,
            }));
        }
        let Some(b) = self.read::<4>()? else {
            return Ok(None);
        };
        let tag = (self.u16([b[0], b[1]]), self.u16([b[2], b[3]]));
        if tag.0 == 0xFFFE {
            // item and delimitation headers have no VR
            let Some(l) = self.read::<4>()? else {
                return Ok(None);
            };
            let len = self.u32(l);
            return Ok(Some(Header {
                tag,
                at,
                sequence: false,
                len,
                size: 8,
            }));
        }
        let Some(vr) = self.read::<2>()? else {
            return Ok(None);
        };
        // Unknown VR bytes are read as UN (32-bit length), as dicom-encoding does.
        let known = VR::from_binary(vr).is_some();
        let (len, size) = if known && short_length(vr) {
            let Some(l) = self.read::<2>()? else {
                return Ok(None);
            };
            (u32::from(self.u16(l)), 8)
        } else {
            let Some(l) = self.read::<6>()? else {
                return Ok(None);
            };
            (self.u32([l[2], l[3], l[4], l[5]]), 12)
        };
        Ok(Some(Header {
            tag,
            at,
            sequence: known && &vr == b"SQ",
            len,
            size,
        }))
    }

    /// Skips a value of defined length `len`, or refuses it when fewer bytes are left.
    fn value(&mut self, tag: (u16, u16), at: u64, len: u32) -> Walk<()> {
        let left = self.input.left();
        let fits = match left {
            Some(left) => u64::from(len) <= left && self.input.skip(len.into()).map_err(Finding::Io)?,
            None => self.input.skip(len.into()).map_err(Finding::Io)?,
        };
        if fits {
            Ok(())
        } else {
            Err(Finding::TooLong { tag, len, at, left })
        }
    }

    /// Checks the position against a defined end: `Some(true)` when it is reached.
    fn at_end(&self, end: Option<u64>) -> Walk<bool> {
        match end {
            Some(e) if self.input.pos() == e => Ok(true),
            Some(e) if self.input.pos() > e => Err(Finding::Malformed {
                at: self.input.pos(),
                what: "an element runs past the end of its sequence or item",
            }),
            _ => Ok(false),
        }
    }

    /// Elements of the top-level data set (`depth` 0) or of one item, up to `end` (defined
    /// item length) or an item delimiter. `Ok(false)`: the data ended (or `until` was
    /// reached), stop the walk.
    fn data_set(&mut self, end: Option<u64>, depth: u32, until: Option<(u16, u16)>) -> Walk<bool> {
        loop {
            if self.at_end(end)? {
                return Ok(true);
            }
            let Some(h) = self.header()? else {
                return Ok(false);
            };
            if depth == 0 && until.is_some_and(|u| h.tag >= u) {
                return Ok(false);
            }
            if h.sequence {
                if !self.sequence(h, depth + 1)? {
                    return Ok(false);
                }
            } else if h.tag == ITEM_END {
                if depth > 0 {
                    return Ok(true); // closes this item (its length is not skipped)
                }
                // dicom-parser ignores a stray item delimiter at the top level
            } else if h.tag == PIXEL_DATA && h.len == UNDEFINED {
                if !self.fragments(depth + 1)? {
                    return Ok(false);
                }
            } else if h.len == UNDEFINED {
                // any other undefined-length element is read as a sequence
                if !self.sequence(h, depth + 1)? {
                    return Ok(false);
                }
            } else {
                self.value(h.tag, h.at, h.len)?;
            }
        }
    }

    /// Items of a sequence whose header is `h`.
    fn sequence(&mut self, h: Header, depth: u32) -> Walk<bool> {
        if depth > MAX_DEPTH {
            return Err(Finding::TooDeep { at: h.at });
        }
        let end = (h.len != UNDEFINED).then(|| self.input.pos() + u64::from(h.len));
        loop {
            if self.at_end(end)? {
                return Ok(true);
            }
            let at = self.input.pos();
            let Some((tag, len)) = self.tag_len()? else {
                return Ok(false);
            };
            match tag {
                ITEM => {
                    let item_end = (len != UNDEFINED).then(|| self.input.pos() + u64::from(len));
                    if !self.data_set(item_end, depth, None)? {
                        return Ok(false);
                    }
                }
                SEQ_END => return Ok(true),
                _ => {
                    return Err(Finding::Malformed {
                        at,
                        what: "a sequence holds something other than an item",
                    });
                }
            }
        }
    }

    /// Basic offset table and fragments of encapsulated pixel data.
    fn fragments(&mut self, depth: u32) -> Walk<bool> {
        if depth > MAX_DEPTH {
            return Err(Finding::TooDeep { at: self.input.pos() });
        }
        loop {
            let at = self.input.pos();
            let Some((tag, len)) = self.tag_len()? else {
                return Ok(false); // dicom-parser accepts pixel data cut short here
            };
            match tag {
                ITEM if len == UNDEFINED => {
                    return Err(Finding::Malformed {
                        at,
                        what: "pixel data fragment of undefined length",
                    });
                }
                ITEM => self.value(ITEM, at, len)?,
                SEQ_END => return Ok(true),
                _ => {
                    return Err(Finding::Malformed {
                        at,
                        what: "encapsulated pixel data holds something other than an item",
                    });
                }
            }
        }
    }
}

/// Where the file meta group starts, from the first (up to) 132 bytes, as dicom-object
/// detects the preamble: `DICM` at byte 128 (checked first), else at byte 0. `None`: no
/// magic code, which dicom-object refuses itself before reading any length.
fn meta_start(head: &[u8]) -> Option<u64> {
    if head.get(128..132) == Some(b"DICM") {
        Some(132)
    } else if head.get(..4) == Some(b"DICM") {
        Some(4)
    } else {
        None
    }
}

/// File meta group (from the current position, just after `DICM`), then the data set
/// (through `inflate(offset)` when deflated).
fn walk_file<'a, I: Input>(
    input: &mut I,
    until: Option<Tag>,
    inflate: impl FnOnce(usize) -> Box<dyn Input + 'a>,
) -> Walk<()> {
    let mut w = Walker {
        input: &mut *input,
        syntax: Syntax::ExplicitLe,
    };
    let Some(first) = w.header()? else {
        return Ok(());
    };
    if first.tag != (0x0002, 0x0000) || first.len != 4 {
        return Ok(()); // dicom-object refuses it
    }
    let Some(gl) = w.read::<4>()? else {
        return Ok(());
    };
    let group_length = u32::from_le_bytes(gl);
    // Elements are read while fewer than the group length bytes were consumed, as
    // dicom-object does (so a wrong group length moves the data set start there too).
    let mut consumed = 0u32;
    let mut uid = [0u8; 64];
    let mut uid_len = 0usize;
    while consumed < group_length {
        let Some(h) = w.header()? else {
            return Ok(());
        };
        if h.len == UNDEFINED {
            return Ok(()); // dicom-object refuses it
        }
        if h.tag == (0x0002, 0x0010) && h.len as usize <= uid.len() {
            // TransferSyntaxUID: the only value read (onto the stack)
            let len = h.len as usize;
            if !w.input.read(&mut uid[..len]).map_err(Finding::Io)? {
                return Err(Finding::TooLong {
                    tag: h.tag,
                    len: h.len,
                    at: h.at,
                    left: w.input.left(),
                });
            }
            uid_len = len;
        } else {
            w.value(h.tag, h.at, h.len)?;
        }
        consumed = consumed.saturating_add(h.size).saturating_add(h.len);
    }
    let (syntax, deflated) = syntax_of(&uid[..uid_len]);
    let until = until.map(|t| (t.0, t.1));
    if deflated {
        let start = w.input.pos() as usize;
        let mut d = Walker {
            input: inflate(start),
            syntax,
        };
        d.data_set(None, 0, until)?;
    } else {
        w.syntax = syntax;
        w.data_set(None, 0, until)?;
    }
    Ok(())
}

impl<I: Input + ?Sized> Input for &mut I {
    fn pos(&self) -> u64 {
        (**self).pos()
    }
    fn left(&self) -> Option<u64> {
        (**self).left()
    }
    fn read(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        (**self).read(buf)
    }
    fn skip(&mut self, n: u64) -> io::Result<bool> {
        (**self).skip(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Explicit VR little endian element.
    fn ele(out: &mut Vec<u8>, g: u16, e: u16, vr: &[u8; 2], len: u32, value: &[u8]) {
        out.extend(g.to_le_bytes());
        out.extend(e.to_le_bytes());
        out.extend(vr);
        if short_length(*vr) {
            out.extend((len as u16).to_le_bytes());
        } else {
            out.extend([0, 0]);
            out.extend(len.to_le_bytes());
        }
        out.extend(value);
    }

    fn item(out: &mut Vec<u8>, e: u16, len: u32) {
        out.extend(0xFFFEu16.to_le_bytes());
        out.extend(e.to_le_bytes());
        out.extend(len.to_le_bytes());
    }

    /// Preamble, DICM and a meta group naming `ts`.
    fn file(ts: &str) -> Vec<u8> {
        let mut uid = ts.as_bytes().to_vec();
        if uid.len() % 2 == 1 {
            uid.push(0);
        }
        let mut meta = Vec::new();
        ele(&mut meta, 2, 0x10, b"UI", uid.len() as u32, &uid);
        let mut out = vec![0u8; 128];
        out.extend(b"DICM");
        ele(&mut out, 2, 0, b"UL", 4, &(meta.len() as u32).to_le_bytes());
        out.extend(meta);
        out
    }

    fn check(b: &[u8]) -> std::result::Result<(), String> {
        check_bytes(Path::new("t.dcm"), b, None).map_err(|e| e.to_string())
    }

    const EXPLICIT: &str = "1.2.840.10008.1.2.1";

    #[test]
    fn plain_elements_in_range_pass_and_overlong_ones_fail() {
        let mut f = file(EXPLICIT);
        ele(&mut f, 0x10, 0x10, b"PN", 4, b"A^B ");
        ele(&mut f, 0x7FE0, 0x10, b"OW", 4, &[1, 2, 3, 4]);
        check(&f).unwrap();
        let mut bad = file(EXPLICIT);
        ele(&mut bad, 0x7FE0, 0x10, b"OW", 0xDEAD_BEEE, &[1, 2, 3, 4]);
        let e = check(&bad).unwrap_err();
        assert!(
            e.contains("t.dcm") && e.contains("(7FE0,0010)") && e.contains("3735928558 bytes"),
            "{e}"
        );
        assert!(e.contains("only 4 bytes follow"), "{e}");
        // the header alone (until Pixel Data) is fine
        check_bytes(Path::new("t.dcm"), &bad, Some(Tag(0x7FE0, 0x0010))).unwrap();
        // a truncated last header is not judged (dicom-object stops or fails on its own)
        let mut cut = file(EXPLICIT);
        cut.extend([0x10, 0, 0x10, 0, b'P']);
        check(&cut).unwrap();
    }

    #[test]
    fn meta_group_lengths_are_checked() {
        let mut f = vec![0u8; 128];
        f.extend(b"DICM");
        ele(&mut f, 2, 0, b"UL", 4, &100u32.to_le_bytes());
        ele(&mut f, 2, 1, b"OB", 0x7FFF_0000, &[0, 1]);
        let e = check(&f).unwrap_err();
        assert!(e.contains("(0002,0001)"), "{e}");
        // no preamble, DICM at 0, is accepted as dicom-object does
        let g = file(EXPLICIT);
        check(&g[128..]).unwrap();
        // not DICOM at all: left to dicom-object
        check(b"hello").unwrap();
    }

    #[test]
    fn nested_sequences_and_items_are_walked() {
        // SQ (undefined) > item (undefined) > SQ (defined) > item (defined) > overlong value
        let mut inner = Vec::new();
        ele(&mut inner, 0x0008, 0x0100, b"SH", 2, b"AB");
        let mut bad_inner = Vec::new();
        ele(&mut bad_inner, 0x0008, 0x0104, b"UT", 1 << 30, b"AB");
        for (content, ok) in [(inner, true), (bad_inner, false)] {
            let mut seq2 = Vec::new();
            item(&mut seq2, 0xE000, content.len() as u32);
            seq2.extend(&content);
            let mut f = file(EXPLICIT);
            ele(&mut f, 0x0040, 0x0260, b"SQ", UNDEFINED, &[]);
            item(&mut f, 0xE000, UNDEFINED);
            ele(&mut f, 0x0008, 0x1250, b"SQ", seq2.len() as u32, &seq2);
            item(&mut f, 0xE00D, 0);
            item(&mut f, 0xE0DD, 0);
            ele(&mut f, 0x0010, 0x0010, b"PN", 2, b"AB");
            match check(&f) {
                Ok(()) => assert!(ok),
                Err(e) => assert!(!ok && e.contains("(0008,0104)"), "{e}"),
            }
        }
        // an undefined-length element of another VR is a sequence too
        let mut f = file(EXPLICIT);
        ele(&mut f, 0x0009, 0x1010, b"UN", UNDEFINED, &[]);
        item(&mut f, 0xE000, 10);
        ele(&mut f, 0x0010, 0x0020, b"LO", 2, b"AB");
        item(&mut f, 0xE0DD, 0);
        check(&f).unwrap();
        // an item that declares less than its content
        let mut f = file(EXPLICIT);
        ele(&mut f, 0x0040, 0x0260, b"SQ", UNDEFINED, &[]);
        item(&mut f, 0xE000, 4);
        ele(&mut f, 0x0010, 0x0020, b"LO", 2, b"AB");
        item(&mut f, 0xE0DD, 0);
        assert!(check(&f).unwrap_err().contains("runs past"));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut f = file(EXPLICIT);
        for _ in 0..=MAX_DEPTH {
            ele(&mut f, 0x0040, 0x0260, b"SQ", UNDEFINED, &[]);
            item(&mut f, 0xE000, UNDEFINED);
        }
        assert!(check(&f).unwrap_err().contains("nested deeper"));
    }

    #[test]
    fn encapsulated_fragments_are_checked() {
        let ts = "1.2.840.10008.1.2.4.90";
        let mut f = file(ts);
        ele(&mut f, 0x7FE0, 0x0010, b"OB", UNDEFINED, &[]);
        item(&mut f, 0xE000, 4);
        f.extend([0, 0, 0, 0]);
        item(&mut f, 0xE000, 6);
        f.extend([1, 2, 3, 4, 5, 6]);
        item(&mut f, 0xE0DD, 0);
        check(&f).unwrap();
        // cut inside the fragments: dicom-object accepts that, so do we
        check(&f[..f.len() - 8]).unwrap();
        let mut bad = file(ts);
        ele(&mut bad, 0x7FE0, 0x0010, b"OB", UNDEFINED, &[]);
        item(&mut bad, 0xE000, 0);
        item(&mut bad, 0xE000, 0xF000_0000);
        bad.extend([1, 2]);
        let e = check(&bad).unwrap_err();
        assert!(e.contains("(FFFE,E000) (item / pixel data fragment)"), "{e}");
        let mut undef = file(ts);
        ele(&mut undef, 0x7FE0, 0x0010, b"OB", UNDEFINED, &[]);
        item(&mut undef, 0xE000, UNDEFINED);
        assert!(check(&undef).unwrap_err().contains("undefined length"));
    }

    #[test]
    fn implicit_and_big_endian_data_sets() {
        // implicit VR LE: tag, 32-bit length; (0040,0260) is an SQ in the dictionary
        let mut f = file("1.2.840.10008.1.2");
        let imp = |f: &mut Vec<u8>, g: u16, e: u16, len: u32| {
            f.extend(g.to_le_bytes());
            f.extend(e.to_le_bytes());
            f.extend(len.to_le_bytes());
        };
        imp(&mut f, 0x0040, 0x0260, 16);
        item(&mut f, 0xE000, 8);
        imp(&mut f, 0x0008, 0x0100, 0x7000_0000); // overlong, inside a defined-length SQ
        let e = check(&f).unwrap_err();
        assert!(e.contains("(0008,0100)"), "{e}");
        let mut ok = file("1.2.840.10008.1.2");
        imp(&mut ok, 0x0010, 0x0010, 2);
        ok.extend(b"AB");
        check(&ok).unwrap();
        // explicit VR big endian
        let mut be = file("1.2.840.10008.1.2.2");
        be.extend(0x7FE0u16.to_be_bytes());
        be.extend(0x0010u16.to_be_bytes());
        be.extend(b"OW\0\0");
        be.extend(4u32.to_be_bytes());
        be.extend([1, 2, 3, 4]);
        check(&be).unwrap();
        let n = be.len();
        be[n - 8..n - 4].copy_from_slice(&0x0100_0000u32.to_be_bytes());
        assert!(check(&be).unwrap_err().contains("16777216 bytes"));
    }

    #[test]
    fn deflated_data_set_is_walked_inflated() {
        use std::io::Write;
        let mut ds = Vec::new();
        ele(&mut ds, 0x0010, 0x0010, b"PN", 2, b"AB");
        ele(&mut ds, 0x7FE0, 0x0010, b"OW", 0x4000_0000, &[1, 2]);
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&ds).unwrap();
        let mut f = file("1.2.840.10008.1.2.1.99");
        f.extend(z.finish().unwrap());
        let e = check(&f).unwrap_err();
        assert!(
            e.contains("inflated data set") && e.contains("(7FE0,0010)"),
            "{e}"
        );
    }
}
