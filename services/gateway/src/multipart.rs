//! A lenient, streaming multipart/form-data parser for the requests the AIAA clients send.
//!
//! It accepts what RFC 7578 parsers often refuse: boundaries quoted or not, with characters
//! outside RFC 2046's list (`----------lImIt_of_THE_fIle_eW_$`), a preamble, bare-LF line
//! ends, parts without a Content-Type, and anything after the closing delimiter (one client
//! adds a CRLF). Every refusal names what is wrong, for a 400 answer.
//!
//! [`Parser`] is fed the body piece by piece as it arrives and reports [`Event`]s (a part's
//! headers, pieces of its data, its end), holding back only the few bytes that may start a
//! delimiter: the caller decides where each part's bytes go (memory under a cap, a spool
//! file; see [`crate::form`]), so no body is ever held whole. Feeding costs time linear in
//! the bytes fed, whatever the piece sizes. [`parse`] runs it over a body held in memory.

use bytes::{Buf, Bytes, BytesMut};

/// Most parts accepted in one request: MONAI Label's session upload sends a DICOM series as
/// a part per slice (a fine whole-body CT has a few thousand); past this, each part's spool
/// file would cost the host an inode for nothing.
pub const MAX_PARTS: usize = 8192;
/// Longest header block of one part.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The headers of one part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartHead {
    /// The field name from Content-Disposition.
    pub name: String,
    /// The file name as sent (may be a full path).
    pub filename: Option<String>,
    /// The part's Content-Type, when given.
    pub content_type: Option<String>,
}

impl PartHead {
    /// The file name without any directory (`/` or `\` separated).
    pub fn base_filename(&self) -> Option<&str> {
        self.filename
            .as_deref()
            .map(|f| f.rsplit(['/', '\\']).next().unwrap_or(f))
            .filter(|f| !f.is_empty())
    }
}

/// What the parser found in the bytes fed so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A part starts.
    Part(PartHead),
    /// The next bytes of the current part.
    Data(Bytes),
    /// The current part ended.
    PartEnd,
}

/// Field names under which the clients send the image.
pub fn is_image_field(name: &str) -> bool {
    name == "datapoint"
        || name == "files"
        || name == "image"
        || name == "file"
        || name
            .strip_prefix("image")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The boundary named by a Content-Type header.
pub fn boundary(content_type: &str) -> Result<String, String> {
    let mut pieces = content_type.split(';');
    let media = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
    if !media.starts_with("multipart/") {
        return Err(format!(
            "the request must be multipart/form-data, not {:?}",
            if media.is_empty() {
                "(no Content-Type)"
            } else {
                media.as_str()
            }
        ));
    }
    let at = content_type
        .to_ascii_lowercase()
        .find("boundary=")
        .ok_or_else(|| "the multipart Content-Type has no boundary= parameter".to_string())?;
    let rest = content_type[at + "boundary=".len()..].trim_start();
    let value = if let Some(quoted) = rest.strip_prefix('"') {
        let end = quoted
            .find('"')
            .ok_or_else(|| "the multipart boundary's closing quote is missing".to_string())?;
        &quoted[..end]
    } else {
        rest.split(';').next().unwrap_or("").trim()
    };
    if value.is_empty() || value.len() > 200 {
        return Err("the multipart boundary must be 1 to 200 characters".into());
    }
    Ok(value.to_string())
}

/// The value of `key` in a header's parameters (`name="x"; filename=y`), quoted or not.
/// Quoted values are taken literally up to the next quote, so Windows paths survive.
fn header_param(value: &str, key: &str) -> Option<String> {
    let lower = value.to_ascii_lowercase();
    let mut search = 0;
    while let Some(found) = lower[search..].find(key) {
        let at = search + found;
        search = at + key.len();
        let before_ok = at == 0 || matches!(lower.as_bytes()[at - 1], b';' | b' ' | b'\t');
        let rest = value[at + key.len()..].trim_start();
        if !before_ok {
            continue;
        }
        let Some(rest) = rest.strip_prefix('=') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(q) = rest.strip_prefix('"') {
            return Some(q.split('"').next().unwrap_or("").to_string());
        }
        return Some(rest.split(';').next().unwrap_or("").trim().to_string());
    }
    None
}

fn parse_headers(block: &[u8], index: usize) -> Result<PartHead, String> {
    let text = std::str::from_utf8(block)
        .map_err(|_| format!("the headers of multipart part {index} are not UTF-8"))?;
    let mut name = None;
    let mut filename = None;
    let mut content_type = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "content-disposition" => {
                name = header_param(value, "name");
                filename = header_param(value, "filename");
            }
            "content-type" => content_type = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let name =
        name.ok_or_else(|| format!("multipart part {index} has no Content-Disposition with a name=\"...\""))?;
    Ok(PartHead {
        name,
        filename,
        content_type,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the first delimiter.
    Preamble,
    /// Just after a delimiter: `--` ends the body, else the rest of the line is padding.
    AfterDelimiter,
    /// In the rest of a delimiter line.
    Padding,
    /// In a part's header block.
    Headers,
    /// In a part's data.
    Data,
    /// After the closing delimiter: ignored.
    Epilogue,
}

/// The streaming parser; see the module docs.
pub struct Parser {
    boundary: String,
    /// `--boundary`.
    delim: Vec<u8>,
    /// Finds `\n--boundary`.
    finder: memchr::memmem::Finder<'static>,
    state: State,
    /// Bytes fed and not yet consumed.
    buf: BytesMut,
    /// Whether `buf[0]` starts a line (the body's start, or just after a header block).
    line_start: bool,
    /// Where the search for a header block's end resumes.
    scan_from: usize,
    /// Parts started so far.
    parts: usize,
    /// The current part's name, for messages.
    current: String,
}

impl std::fmt::Debug for Parser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parser")
            .field("boundary", &self.boundary)
            .field("state", &self.state)
            .field("parts", &self.parts)
            .finish()
    }
}

impl Parser {
    /// A parser for a body of this Content-Type (which names the boundary).
    pub fn new(content_type: &str) -> Result<Self, String> {
        let boundary = boundary(content_type)?;
        let delim = format!("--{boundary}").into_bytes();
        let mut needle = vec![b'\n'];
        needle.extend_from_slice(&delim);
        Ok(Parser {
            boundary,
            delim,
            finder: memchr::memmem::Finder::new(&needle).into_owned(),
            state: State::Preamble,
            buf: BytesMut::new(),
            line_start: true,
            scan_from: 0,
            parts: 0,
            current: String::new(),
        })
    }

    /// Whether the closing delimiter has been seen (the rest of the body is ignored).
    pub fn is_done(&self) -> bool {
        self.state == State::Epilogue
    }

    /// Bytes that may start a delimiter (`\r\n--boundary`) and are held back.
    fn hold(&self) -> usize {
        self.delim.len() + 2
    }

    /// The next delimiter in `buf`: (where the line end before it starts, where `--` starts).
    fn find_delimiter(&self) -> Option<(usize, usize)> {
        if self.line_start && self.buf.starts_with(&self.delim) {
            return Some((0, 0));
        }
        let p = self.finder.find(&self.buf)?;
        let eol = if p > 0 && self.buf[p - 1] == b'\r' {
            p - 1
        } else {
            p
        };
        Some((eol, p + 1))
    }

    /// Feeds the next bytes of the body; events found are appended to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<Event>) -> Result<(), String> {
        if self.state == State::Epilogue {
            return Ok(());
        }
        self.buf.extend_from_slice(input);
        self.step(out, false)
    }

    /// Ends the body: fails when it stopped before the closing delimiter.
    pub fn finish(&mut self, out: &mut Vec<Event>) -> Result<(), String> {
        self.step(out, true)?;
        let index = self.parts.saturating_sub(1);
        match self.state {
            State::Epilogue => Ok(()),
            State::Preamble => Err(format!(
                "the multipart body does not contain its boundary line --{}",
                self.boundary
            )),
            State::AfterDelimiter | State::Padding => Err(format!(
                "multipart part {} ends inside its boundary line",
                self.parts
            )),
            State::Headers => Err(format!(
                "multipart part {} has no blank line after its headers",
                self.parts
            )),
            State::Data => Err(format!(
                "the multipart body ends inside part {index} ({:?}): the closing --{}-- is missing",
                self.current, self.boundary
            )),
        }
    }

    /// Consumes what `buf` allows; `end`: no more bytes will come.
    fn step(&mut self, out: &mut Vec<Event>, end: bool) -> Result<(), String> {
        loop {
            match self.state {
                State::Epilogue => {
                    self.buf.clear();
                    return Ok(());
                }
                State::Preamble => match self.find_delimiter() {
                    Some((_, at)) => {
                        self.buf.advance(at + self.delim.len());
                        self.state = State::AfterDelimiter;
                    }
                    None => {
                        // Keep what may start a delimiter; the rest is preamble.
                        let drop = self.buf.len().saturating_sub(self.hold());
                        if drop > 0 {
                            self.buf.advance(drop);
                            self.line_start = false;
                        }
                        return Ok(());
                    }
                },
                State::AfterDelimiter => {
                    if self.buf.len() < 2 && !end {
                        return Ok(());
                    }
                    if self.buf.starts_with(b"--") {
                        self.state = State::Epilogue;
                        continue;
                    }
                    if self.parts >= MAX_PARTS {
                        return Err(format!("the multipart body has more than {MAX_PARTS} parts"));
                    }
                    self.state = State::Padding;
                }
                State::Padding => match memchr::memchr(b'\n', &self.buf) {
                    // The rest of the delimiter line (transport padding) is ignored.
                    Some(p) => {
                        self.buf.advance(p + 1);
                        self.state = State::Headers;
                        self.scan_from = 0;
                    }
                    None => {
                        self.buf.clear();
                        return Ok(());
                    }
                },
                State::Headers => {
                    let Some((headers_end, data_start)) = self.header_end(end) else {
                        if self.buf.len() > MAX_HEADER_BYTES + 2 {
                            return Err(self.headers_too_long());
                        }
                        return Ok(());
                    };
                    if headers_end > MAX_HEADER_BYTES {
                        return Err(self.headers_too_long());
                    }
                    let head = parse_headers(&self.buf[..headers_end], self.parts)?;
                    self.parts += 1;
                    self.current.clone_from(&head.name);
                    out.push(Event::Part(head));
                    self.buf.advance(data_start);
                    self.state = State::Data;
                    self.line_start = true;
                }
                State::Data => match self.find_delimiter() {
                    Some((eol, at)) => {
                        if eol > 0 {
                            out.push(Event::Data(self.buf.split_to(eol).freeze()));
                        }
                        self.buf.advance(at - eol + self.delim.len());
                        out.push(Event::PartEnd);
                        self.state = State::AfterDelimiter;
                    }
                    None => {
                        let ready = self.buf.len().saturating_sub(self.hold());
                        if ready > 0 {
                            out.push(Event::Data(self.buf.split_to(ready).freeze()));
                            self.line_start = false;
                        }
                        return Ok(());
                    }
                },
            }
        }
    }

    fn headers_too_long(&self) -> String {
        format!(
            "the headers of multipart part {} are longer than 16 KiB",
            self.parts
        )
    }

    /// Finds the blank line ending the header block in `buf`: (end of the headers, start
    /// of the data). An empty first line means no headers at all.
    fn header_end(&mut self, end: bool) -> Option<(usize, usize)> {
        let blank = |buf: &[u8], i: usize| -> Option<Option<usize>> {
            // Some(Some(len)): a blank line of `len` bytes at i; Some(None): not blank;
            // None: not enough bytes to tell.
            match buf.get(i) {
                None => None,
                Some(b'\n') => Some(Some(1)),
                Some(b'\r') => match buf.get(i + 1) {
                    None => None,
                    Some(b'\n') => Some(Some(2)),
                    Some(_) => Some(None),
                },
                Some(_) => Some(None),
            }
        };
        if self.scan_from == 0 {
            match blank(&self.buf, 0) {
                Some(Some(n)) => return Some((0, n)),
                None if !end => return None,
                _ => {}
            }
        }
        let mut i = self.scan_from;
        while let Some(p) = memchr::memchr(b'\n', &self.buf[i..]) {
            let line = i + p + 1;
            match blank(&self.buf, line) {
                Some(Some(n)) => return Some((line, line + n)),
                Some(None) => i = line,
                None => {
                    // Decide when more bytes come: resume at this line end.
                    self.scan_from = i + p;
                    return None;
                }
            }
        }
        self.scan_from = self.buf.len();
        None
    }
}

/// One part of a form held in memory.
#[derive(Clone, Debug)]
pub struct Part {
    /// Its headers.
    pub head: PartHead,
    /// Its bytes.
    pub data: Bytes,
}

/// Parses a multipart/form-data body held in memory, every part kept in memory (tests, the
/// fuzz target; requests go through [`crate::form`]).
pub fn parse(content_type: &str, body: &[u8]) -> Result<Vec<Part>, String> {
    let mut parser = Parser::new(content_type)?;
    let mut events = Vec::new();
    parser.feed(body, &mut events)?;
    parser.finish(&mut events)?;
    Ok(collect(events))
}

/// Assembles parts from events.
pub fn collect(events: Vec<Event>) -> Vec<Part> {
    let mut parts: Vec<Part> = Vec::new();
    let mut data = BytesMut::new();
    for event in events {
        match event {
            Event::Part(head) => parts.push(Part {
                head,
                data: Bytes::new(),
            }),
            Event::Data(d) => data.extend_from_slice(&d),
            Event::PartEnd => {
                if let Some(p) = parts.last_mut() {
                    p.data = data.split().freeze();
                }
            }
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: &str = "----------lImIt_of_THE_fIle_eW_$";

    fn python_client_body(params: &str, file: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(
            format!("--{LIMIT}\r\nContent-Disposition: form-data; name=\"params\"\r\n\r\n{params}\r\n")
                .as_bytes(),
        );
        b.extend_from_slice(format!("--{LIMIT}\r\nContent-Disposition: form-data; name=\"datapoint\"; filename=\"/tmp/x y/im.nii.gz\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
        b.extend_from_slice(file);
        b.extend_from_slice(format!("\r\n--{LIMIT}--\r\n\r\n").as_bytes());
        b
    }

    /// Parses `body` fed in pieces of `size` bytes.
    fn parse_in_pieces(content_type: &str, body: &[u8], size: usize) -> Result<Vec<Part>, String> {
        let mut parser = Parser::new(content_type)?;
        let mut events = Vec::new();
        for piece in body.chunks(size.max(1)) {
            parser.feed(piece, &mut events)?;
        }
        parser.finish(&mut events)?;
        Ok(collect(events))
    }

    fn summary(parts: &Result<Vec<Part>, String>) -> Result<Vec<(PartHead, Vec<u8>)>, String> {
        parts
            .as_ref()
            .map(|ps| ps.iter().map(|p| (p.head.clone(), p.data.to_vec())).collect())
            .map_err(Clone::clone)
    }

    #[test]
    fn unquoted_dollar_boundary_with_trailing_crlf() {
        let file = b"\x1f\x8b\r\n--not-a-boundary\r\n\x00\xff";
        let body = python_client_body("{\"points\": \"[[1,2,3]]\"}", file);
        let parts = parse(&format!("multipart/form-data; boundary={LIMIT}"), &body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].head.name, "params");
        assert_eq!(parts[0].data.as_ref(), b"{\"points\": \"[[1,2,3]]\"}");
        assert!(parts[0].head.content_type.is_none());
        assert_eq!(parts[1].data.as_ref(), file);
        assert_eq!(parts[1].head.base_filename(), Some("im.nii.gz"));
    }

    #[test]
    fn quoted_boundary_and_windows_path() {
        let body = b"preamble\r\n--abc$x\r\ncontent-disposition: form-data; name=image0; filename=\"C:\\data\\a.png\"\r\n\r\nPNG\r\n--abc$x--";
        let parts = parse("multipart/form-data; boundary=\"abc$x\"", body).unwrap();
        assert_eq!(parts[0].head.name, "image0");
        assert_eq!(parts[0].head.base_filename(), Some("a.png"));
        assert_eq!(parts[0].data.as_ref(), b"PNG");
    }

    #[test]
    fn any_piece_sizes_give_the_same_parts() {
        let ct = format!("multipart/form-data; boundary={LIMIT}");
        let mut bodies = vec![
            python_client_body("{}", b"\r\n\r\n--x\n--"),
            python_client_body("", b""),
            b"--b\nContent-Disposition: form-data; name=a\n\n\n--b\nContent-Disposition: form-data; name=b\r\n\r\n\r\n\r\n--b--".to_vec(),
            b"pre\n--b\r\nContent-Disposition: form-data; name=a\r\n\r\n--b--\r\n".to_vec(),
            b"--b\r\nX: y\r\n\r\nz\r\n--b--\r\n".to_vec(),
            b"--b\r\nContent-Disposition: form-data; name=\"params\"\r\n\r\n{}".to_vec(),
            b"--b\r\nContent-Disposition: form-data; name=\"p\"".to_vec(),
            b"--b".to_vec(),
            b"--b-".to_vec(),
            b"hello".to_vec(),
        ];
        bodies.push(python_client_body("{}", &vec![b'-'; 5000]));
        for body in &bodies {
            for ct in [ct.as_str(), "multipart/form-data; boundary=b"] {
                let whole = summary(&parse(ct, body));
                for size in [1, 2, 3, 7, 64, 1000] {
                    assert_eq!(
                        summary(&parse_in_pieces(ct, body, size)),
                        whole,
                        "{:?} in pieces of {size}",
                        String::from_utf8_lossy(body)
                    );
                }
            }
        }
        let empty = parse("multipart/form-data; boundary=b", &bodies[3]).unwrap();
        assert_eq!(empty.len(), 1);
        assert!(empty[0].data.is_empty());
        let bare_lf = parse("multipart/form-data; boundary=b", &bodies[2]).unwrap();
        assert_eq!(bare_lf[0].data.as_ref(), b"");
        assert_eq!(bare_lf[1].data.as_ref(), b"\r\n");
    }

    #[test]
    fn refusals_name_the_problem() {
        assert!(
            parse("application/json", b"")
                .unwrap_err()
                .contains("multipart/form-data")
        );
        assert!(
            parse("multipart/form-data", b"")
                .unwrap_err()
                .contains("boundary")
        );
        let truncated = b"--b\r\nContent-Disposition: form-data; name=\"params\"\r\n\r\n{}";
        assert!(
            parse("multipart/form-data; boundary=b", truncated)
                .unwrap_err()
                .contains("closing")
        );
        assert!(
            parse("multipart/form-data; boundary=b", b"hello")
                .unwrap_err()
                .contains("boundary line")
        );
        let no_name = b"--b\r\nX: y\r\n\r\nz\r\n--b--\r\n";
        assert!(
            parse("multipart/form-data; boundary=b", no_name)
                .unwrap_err()
                .contains("name=")
        );
        let mut long = b"--b\r\nContent-Disposition: form-data; name=a\r\nX: ".to_vec();
        long.extend(std::iter::repeat_n(b'x', 20_000));
        let err = parse_in_pieces("multipart/form-data; boundary=b", &long, 100).unwrap_err();
        assert!(err.contains("16 KiB"), "{err}");
        let mut many = Vec::new();
        for _ in 0..=MAX_PARTS {
            many.extend_from_slice(b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n");
        }
        many.extend_from_slice(b"--b--");
        assert!(
            parse("multipart/form-data; boundary=b", &many)
                .unwrap_err()
                .contains(&format!("more than {MAX_PARTS} parts"))
        );
    }

    #[test]
    fn image_fields() {
        for ok in ["datapoint", "image", "image0", "image12"] {
            assert!(is_image_field(ok), "{ok}");
        }
        for no in ["params", "imagex", "images"] {
            assert!(!is_image_field(no), "{no}");
        }
    }
}
