//! Answers built whole in memory with an exact `Content-Length`, never chunked and never
//! compressed (a client reads the raw socket): plain JSON, raw files, and the multipart
//! answers of the AIAA clients.
//!
//! A multipart answer starts with `--<token>` (no preamble: clients guess the boundary from
//! the first line), puts the `params` part first as `application/json`, then the file part
//! with a quoted non-empty `filename` and `Content-Type: application/octet-stream`, uses
//! CRLF line ends and ends with `--<token>--\r\n`. The token never occurs in the payload.

use axum::body::Body;
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use http::{StatusCode, header};

/// A complete answer with an exact Content-Length.
pub fn bytes(status: StatusCode, content_type: &str, body: Bytes) -> Response {
    let len = body.len();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::CONTENT_LENGTH, http::HeaderValue::from(len));
    response
}

/// A JSON answer with `status`.
pub fn json_with_status(status: StatusCode, value: &serde_json::Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    bytes(status, "application/json", Bytes::from(body))
}

/// A 200 JSON answer.
pub fn json(value: &serde_json::Value) -> Response {
    json_with_status(StatusCode::OK, value)
}

/// A file download: `application/octet-stream` with `Content-Disposition: attachment;
/// filename="<name>"` (MONAI Label's clients need the name; quotes and controls in it are
/// replaced by `_`).
pub fn attachment(name: &str, data: Bytes) -> Response {
    let mut response = bytes(StatusCode::OK, "application/octet-stream", data);
    set_disposition(&mut response, name);
    response
}

/// Sets `Content-Disposition: attachment; filename="<name>"` (quotes and controls in the
/// name replaced by `_`).
pub fn set_disposition(response: &mut Response, name: &str) {
    let safe: String = name
        .chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if let Ok(v) = http::HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
}

/// A result file of a POST endpoint.
#[derive(Clone, Debug)]
pub struct ResultFile {
    /// Its name; the extension tells the format (`result.nii.gz`, `result.png`).
    pub filename: String,
    /// Its bytes.
    pub data: Bytes,
}

/// What `output=` asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// Multipart: params and the file (the default).
    #[default]
    Multipart,
    /// The raw file alone.
    Image,
    /// The params alone, as JSON.
    Json,
}

impl Output {
    /// Parses the `output` query value; empty or absent is multipart.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::trim).unwrap_or("") {
            "" | "multipart" | "all" => Ok(Self::Multipart),
            "image" => Ok(Self::Image),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "output={other:?} is not understood: use output=image, output=json or leave it out"
            )),
        }
    }
}

/// The answer of a POST endpoint: params and, when the endpoint makes one, a file.
#[derive(Clone, Debug)]
pub struct ResultAnswer {
    /// The result params: a JSON object's text (written once, never re-serialised).
    pub params: Bytes,
    /// The result file.
    pub file: Option<ResultFile>,
}

impl ResultAnswer {
    /// The answer in the shape `output` asks for. `output=image` without a file answers the
    /// params as JSON (there is nothing else to send).
    pub fn into_response(self, output: Output) -> Response {
        match (output, self.file) {
            (Output::Json, _) | (Output::Image, None) => {
                bytes(StatusCode::OK, "application/json", self.params)
            }
            (Output::Image, Some(file)) => bytes(StatusCode::OK, "application/octet-stream", file.data),
            (Output::Multipart, file) => {
                let (content_type, body) = multipart(&self.params, file.as_ref());
                bytes(StatusCode::OK, &content_type, body)
            }
        }
    }
}

/// A boundary token that occurs nowhere in `parts`.
fn boundary_for(parts: &[&[u8]]) -> String {
    loop {
        let token = format!("aiaa{}", uuid::Uuid::new_v4().simple());
        let finder = memchr::memmem::Finder::new(token.as_bytes());
        if !parts.iter().any(|p| finder.find(p).is_some()) {
            return token;
        }
    }
}

/// Encodes `params` (a JSON text, always) and `file` (when given) as multipart/form-data;
/// returns the Content-Type (with the boundary) and the body.
pub fn multipart(params_text: &[u8], file: Option<&ResultFile>) -> (String, Bytes) {
    let data: &[u8] = file.map(|f| f.data.as_ref()).unwrap_or_default();
    let token = boundary_for(&[params_text, data]);
    let mut body = BytesMut::with_capacity(params_text.len() + data.len() + 512);
    body.put_slice(format!("--{token}\r\n").as_bytes());
    body.put_slice(b"Content-Disposition: form-data; name=\"params\"\r\n");
    body.put_slice(b"Content-Type: application/json\r\n\r\n");
    body.put_slice(params_text);
    body.put_slice(b"\r\n");
    if let Some(file) = file {
        let name = if file.filename.is_empty() {
            "result.nii.gz"
        } else {
            file.filename.as_str()
        };
        body.put_slice(format!("--{token}\r\n").as_bytes());
        body.put_slice(
            format!("Content-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n").as_bytes(),
        );
        body.put_slice(b"Content-Type: application/octet-stream\r\n\r\n");
        body.put_slice(&file.data);
        body.put_slice(b"\r\n");
    }
    body.put_slice(format!("--{token}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={token}"), body.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_shape() {
        let file = ResultFile {
            filename: "result.nii.gz".into(),
            data: Bytes::from_static(b"\x1f\x8bDATA--x\r\n"),
        };
        let (ct, body) = multipart(br#"{"points":[[1,2,3]]}"#, Some(&file));
        let token = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!(
            "--{token}\r\nContent-Disposition: form-data; name=\"params\""
        )));
        assert!(text.ends_with(&format!("\r\n--{token}--\r\n")));
        assert!(
            text.contains("filename=\"result.nii.gz\"\r\nContent-Type: application/octet-stream\r\n\r\n")
        );
        assert_eq!(text.matches(token).count(), 3);
        let params_at = text.find("name=\"params\"").unwrap();
        let file_at = text.find("filename=").unwrap();
        assert!(params_at < file_at);
    }

    #[test]
    fn output_modes() {
        assert_eq!(Output::parse(None).unwrap(), Output::Multipart);
        assert_eq!(Output::parse(Some("image")).unwrap(), Output::Image);
        assert_eq!(Output::parse(Some("json")).unwrap(), Output::Json);
        assert!(Output::parse(Some("xml")).is_err());
        let answer = ResultAnswer {
            params: Bytes::from_static(br#"{"a":1}"#),
            file: None,
        };
        let r = answer.into_response(Output::Multipart);
        let len: usize = r.headers()[header::CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(len > 0);
    }
}
