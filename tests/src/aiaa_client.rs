//! A raw-socket HTTP client that sends the AIAA clients' exact request shapes (the Python
//! client's unquoted `$` boundary with the trailing CRLF over HTTP/1.1; the C++ client's
//! quoted boundary over HTTP/1.0 with `Connection: Close`) and reads answers the way they do:
//! exact Content-Length (chunking or compression is a failure), the boundary taken from the
//! body's first line, the file part found by its quoted filename.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The Python client's boundary, sent unquoted.
pub const PY_LIMIT: &str = "----------lImIt_of_THE_fIle_eW_$";

/// An HTTP answer as read from the socket.
#[derive(Debug)]
pub struct Answer {
    pub status_line: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy), for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        assert!(
            self.header("content-type")
                .unwrap_or("")
                .starts_with("application/json"),
            "{:?}",
            self.headers
        );
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts the AIAA JSON error shape and a status; returns the message.
    pub fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", String::from_utf8_lossy(&self.body));
        let v = self.json();
        assert_eq!(v["success"], serde_json::json!(false), "{v}");
        assert!(v["error"]["type"].is_string(), "{v}");
        v["error"]["message"][0].as_str().unwrap().to_string()
    }
}

/// Reads one answer: headers, then exactly Content-Length bytes (chunking is a failure).
pub async fn read_answer(stream: &mut TcpStream) -> Answer {
    let answer = read_head(stream).await;
    let len: usize = answer
        .header("content-length")
        .unwrap_or_else(|| panic!("no Content-Length: {:?}", answer.headers))
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.unwrap();
    Answer { body, ..answer }
}

/// Reads an answer's status line and headers (no chunking, no compression).
async fn read_head(stream: &mut TcpStream) -> Answer {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.unwrap();
        assert!(
            n == 1,
            "connection closed inside the headers: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap().to_string();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let answer = Answer {
        status_line,
        status,
        headers,
        body: Vec::new(),
    };
    assert!(
        answer.header("transfer-encoding").is_none(),
        "chunked answer: {:?}",
        answer.headers
    );
    assert!(
        answer.header("content-encoding").is_none(),
        "{:?}",
        answer.headers
    );
    answer
}

/// Sends raw bytes on a new connection and reads one answer (headers only for a HEAD
/// request, whose answer has no body).
pub async fn send(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    if request.starts_with(b"HEAD ") {
        read_head(&mut stream).await
    } else {
        read_answer(&mut stream).await
    }
}

/// A GET/DELETE over HTTP/1.1 as Python's http.client sends it.
pub fn simple(method: &str, path: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: identity\r\n\r\n").into_bytes()
}

/// The Python client's multipart body: text fields, then files, unquoted `$` boundary, and
/// the extra CRLF after the closing delimiter.
pub fn python_body(fields: &[(&str, &str)], files: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in fields {
        b.extend_from_slice(
            format!("--{PY_LIMIT}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
        );
    }
    for (k, name, data) in files {
        b.extend_from_slice(
            format!("--{PY_LIMIT}\r\nContent-Disposition: form-data; name=\"{k}\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{PY_LIMIT}--\r\n\r\n").as_bytes());
    b
}

/// A Python-client request over HTTP/1.1.
pub fn python_request(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: identity\r\ncontent-type: multipart/form-data; boundary={PY_LIMIT}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// The C++ client's shape: quoted boundary, HTTP/1.0, `Connection: Close`.
pub fn cpp_request(
    method: &str,
    path: &str,
    fields: &[(&str, &str)],
    files: &[(&str, &str, &[u8])],
) -> Vec<u8> {
    let boundary = "---------------------------AiaaCpp7d93b2";
    let mut b = Vec::new();
    for (k, v) in fields {
        b.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
        );
    }
    for (k, name, data) in files {
        b.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"; filename=\"{name}\"\r\n\r\n"
            )
            .as_bytes(),
        );
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let mut r = format!(
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nConnection: Close\r\nContent-Type: multipart/form-data; boundary=\"{boundary}\"\r\nContent-Length: {}\r\n\r\n",
        b.len()
    )
    .into_bytes();
    r.extend_from_slice(&b);
    r
}

/// A multipart answer parsed the way the clients do: the boundary from the body's first
/// line; the params part by name; the file part by its quoted filename.
pub struct MultipartAnswer {
    pub params: serde_json::Value,
    pub filename: Option<String>,
    pub file: Option<Vec<u8>>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn parse_multipart_answer(answer: &Answer) -> MultipartAnswer {
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let ct = answer.header("content-type").unwrap();
    assert!(ct.starts_with("multipart/form-data; boundary="), "{ct}");
    let body = &answer.body;
    let first_line_end = find(body, b"\r\n").unwrap();
    let delim = body[..first_line_end].to_vec();
    assert!(delim.starts_with(b"--"));
    assert_eq!(
        format!("--{}", ct.split("boundary=").nth(1).unwrap()).as_bytes(),
        &delim[..]
    );
    let mut closing = delim.clone();
    closing.extend_from_slice(b"--\r\n");
    assert!(body.ends_with(&closing), "the body must end --token--CRLF");
    let mut sep = b"\r\n".to_vec();
    sep.extend_from_slice(&delim);
    let mut parts = Vec::new();
    let mut rest = &body[first_line_end + 2..];
    loop {
        let end = find(rest, &sep).unwrap();
        parts.push(&rest[..end]);
        rest = &rest[end + sep.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        rest = &rest[2..];
    }
    let mut out = MultipartAnswer {
        params: serde_json::Value::Null,
        filename: None,
        file: None,
    };
    for (i, part) in parts.iter().enumerate() {
        let h = find(part, b"\r\n\r\n").unwrap();
        let headers = String::from_utf8_lossy(&part[..h]).to_string();
        let data = part[h + 4..].to_vec();
        if let Some(at) = headers.find("filename=\"") {
            let name = headers[at + 10..].split('"').next().unwrap().to_string();
            assert!(!name.is_empty());
            assert!(
                headers.contains("Content-Type: application/octet-stream"),
                "{headers}"
            );
            out.filename = Some(name);
            out.file = Some(data);
        } else {
            assert_eq!(i, 0, "params must be the first part");
            assert!(headers.contains("name=\"params\""), "{headers}");
            assert!(!headers.contains("octet-stream"), "{headers}");
            out.params = serde_json::from_slice(&data).unwrap();
        }
    }
    out
}

/// The value of a metric line `name` (no labels) in a Prometheus text page (`/metrics`).
pub fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}
