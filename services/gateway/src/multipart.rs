//! A lenient multipart/form-data parser for the requests the AIAA clients send.
//!
//! It accepts what RFC 7578 parsers often refuse: boundaries quoted or not, with characters
//! outside RFC 2046's list (`----------lImIt_of_THE_fIle_eW_$`), a preamble, bare-LF line
//! ends, parts without a Content-Type, and anything after the closing delimiter (one client
//! adds a CRLF). Every refusal names what is wrong, for a 400 answer.

use bytes::Bytes;

/// Most parts accepted in one request.
pub const MAX_PARTS: usize = 256;
/// Longest header block of one part.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// One part of a form.
#[derive(Clone, Debug)]
pub struct Part {
    /// The field name from Content-Disposition (empty when absent).
    pub name: String,
    /// The file name as sent (may be a full path).
    pub filename: Option<String>,
    /// The part's Content-Type, when given.
    pub content_type: Option<String>,
    /// The part's bytes.
    pub data: Bytes,
}

impl Part {
    /// The file name without any directory (`/` or `\` separated).
    pub fn base_filename(&self) -> Option<&str> {
        self.filename
            .as_deref()
            .map(|f| f.rsplit(['/', '\\']).next().unwrap_or(f))
            .filter(|f| !f.is_empty())
    }
}

/// A parsed form.
#[derive(Clone, Debug, Default)]
pub struct Form {
    /// The parts in order.
    pub parts: Vec<Part>,
}

/// Field names under which the clients send the image.
pub fn is_image_field(name: &str) -> bool {
    name == "datapoint"
        || name == "image"
        || name == "file"
        || name
            .strip_prefix("image")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

impl Form {
    /// The first part named `name`.
    pub fn field(&self, name: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.name == name)
    }

    /// A text field, as UTF-8.
    pub fn text(&self, name: &str) -> Result<Option<&str>, String> {
        match self.field(name) {
            None => Ok(None),
            Some(p) => std::str::from_utf8(&p.data)
                .map(Some)
                .map_err(|_| format!("the form field {name:?} is not UTF-8 text")),
        }
    }

    /// The image part: the first one named `datapoint`, `image`, `imageN` or `file`, else the
    /// first part that carries a file name.
    pub fn image(&self) -> Option<&Part> {
        self.parts.iter().find(|p| is_image_field(&p.name)).or_else(|| {
            self.parts
                .iter()
                .find(|p| p.filename.is_some() && p.name != "params")
        })
    }
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

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from >= hay.len() {
        return None;
    }
    let first = needle[0];
    let mut i = from;
    while i + needle.len() <= hay.len() {
        let at = i + hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)?;
        if hay[at..].starts_with(needle) {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// Where the next delimiter line starts at or after `from`: `--boundary` at the body's start
/// or right after a line end. Returns (start of the line end before it, start of `--`).
fn next_delimiter(body: &[u8], delim: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    loop {
        let at = find(body, delim, i)?;
        if at == 0 {
            return Some((0, 0));
        }
        if body[at - 1] == b'\n' {
            let eol = if at >= 2 && body[at - 2] == b'\r' {
                at - 2
            } else {
                at - 1
            };
            return Some((eol.max(from), at));
        }
        i = at + 1;
    }
}

/// Skips to just after the next line end at or after `i`.
fn after_line(body: &[u8], i: usize) -> Option<usize> {
    body[i..].iter().position(|&b| b == b'\n').map(|p| i + p + 1)
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

fn parse_headers(block: &[u8], index: usize) -> Result<(String, Option<String>, Option<String>), String> {
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
    Ok((name, filename, content_type))
}

/// Parses a multipart/form-data body.
pub fn parse(content_type: &str, body: &Bytes) -> Result<Form, String> {
    let boundary = boundary(content_type)?;
    let delim = format!("--{boundary}").into_bytes();
    let (_, mut at) = next_delimiter(body, &delim, 0)
        .ok_or_else(|| format!("the multipart body does not contain its boundary line --{boundary}"))?;
    let mut form = Form::default();
    loop {
        let after = at + delim.len();
        if body[after..].starts_with(b"--") {
            return Ok(form);
        }
        if form.parts.len() >= MAX_PARTS {
            return Err(format!("the multipart body has more than {MAX_PARTS} parts"));
        }
        let index = form.parts.len();
        // The rest of the delimiter line (transport padding) is ignored.
        let headers_start = after_line(body, after)
            .ok_or_else(|| format!("multipart part {index} ends inside its boundary line"))?;
        let (headers_end, data_start) = header_end(body, headers_start)
            .ok_or_else(|| format!("multipart part {index} has no blank line after its headers"))?;
        if headers_end - headers_start > MAX_HEADER_BYTES {
            return Err(format!(
                "the headers of multipart part {index} are longer than 16 KiB"
            ));
        }
        let (name, filename, content_type) = parse_headers(&body[headers_start..headers_end], index)?;
        let (data_end, next) = next_delimiter(body, &delim, data_start).ok_or_else(|| {
            format!("the multipart body ends inside part {index} ({name:?}): the closing --{boundary}-- is missing")
        })?;
        form.parts.push(Part {
            name,
            filename,
            content_type,
            data: body.slice(data_start..data_end),
        });
        at = next;
    }
}

/// Finds the blank line ending a header block: returns (end of headers, start of data).
fn header_end(body: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    loop {
        // An empty first line means no headers at all.
        if body[i..].starts_with(b"\r\n") {
            return Some((i, i + 2));
        }
        if body[i..].starts_with(b"\n") {
            return Some((i, i + 1));
        }
        i = after_line(body, i)?;
        if i >= body.len() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: &str = "----------lImIt_of_THE_fIle_eW_$";

    fn python_client_body(params: &str, file: &[u8]) -> Bytes {
        let mut b = Vec::new();
        b.extend_from_slice(
            format!("--{LIMIT}\r\nContent-Disposition: form-data; name=\"params\"\r\n\r\n{params}\r\n")
                .as_bytes(),
        );
        b.extend_from_slice(format!("--{LIMIT}\r\nContent-Disposition: form-data; name=\"datapoint\"; filename=\"/tmp/x y/im.nii.gz\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
        b.extend_from_slice(file);
        b.extend_from_slice(format!("\r\n--{LIMIT}--\r\n\r\n").as_bytes());
        Bytes::from(b)
    }

    #[test]
    fn unquoted_dollar_boundary_with_trailing_crlf() {
        let file = b"\x1f\x8b\r\n--not-a-boundary\r\n\x00\xff";
        let body = python_client_body("{\"points\": \"[[1,2,3]]\"}", file);
        let form = parse(&format!("multipart/form-data; boundary={LIMIT}"), &body).unwrap();
        assert_eq!(form.parts.len(), 2);
        assert_eq!(
            form.text("params").unwrap().unwrap(),
            "{\"points\": \"[[1,2,3]]\"}"
        );
        let image = form.image().unwrap();
        assert_eq!(image.data.as_ref(), file);
        assert_eq!(image.base_filename(), Some("im.nii.gz"));
        assert!(form.field("params").unwrap().content_type.is_none());
    }

    #[test]
    fn quoted_boundary_and_windows_path() {
        let body = Bytes::from(
            "preamble\r\n--abc$x\r\ncontent-disposition: form-data; name=image0; filename=\"C:\\data\\a.png\"\r\n\r\nPNG\r\n--abc$x--",
        );
        let form = parse("multipart/form-data; boundary=\"abc$x\"", &body).unwrap();
        let image = form.image().unwrap();
        assert_eq!(image.name, "image0");
        assert_eq!(image.base_filename(), Some("a.png"));
        assert_eq!(image.data.as_ref(), b"PNG");
    }

    #[test]
    fn refusals_name_the_problem() {
        assert!(
            parse("application/json", &Bytes::new())
                .unwrap_err()
                .contains("multipart/form-data")
        );
        assert!(
            parse("multipart/form-data", &Bytes::new())
                .unwrap_err()
                .contains("boundary")
        );
        let truncated = Bytes::from("--b\r\nContent-Disposition: form-data; name=\"params\"\r\n\r\n{}");
        assert!(
            parse("multipart/form-data; boundary=b", &truncated)
                .unwrap_err()
                .contains("closing")
        );
        let nothing = Bytes::from("hello");
        assert!(
            parse("multipart/form-data; boundary=b", &nothing)
                .unwrap_err()
                .contains("boundary line")
        );
        let no_name = Bytes::from("--b\r\nX: y\r\n\r\nz\r\n--b--\r\n");
        assert!(
            parse("multipart/form-data; boundary=b", &no_name)
                .unwrap_err()
                .contains("name=")
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
