//! Reading a multipart request body into a [`Form`] as it arrives, under limits checked
//! before anything is kept: the body's total (`--gateway-max-body-bytes`; a Content-Length
//! above it is refused before reading, a chunked body the moment it passes it), the `params`
//! field (`--gateway-max-params-bytes`, 1 MiB on the model endpoints), the other text fields
//! (1 MiB together). Files (the image, a model) are spooled to a temp file in
//! `--gateway-spool-dir`, deleted when the request ends, so an upload's size costs disk,
//! never memory; the bytes spooled by all requests in progress are bounded
//! (`--gateway-max-spool-bytes`: past it, 503 with `Retry-After`). Text fields are kept in
//! memory. The multipart bytes are parsed as they come
//! ([`crate::multipart::Parser`]), each piece in time linear in its size, so a big body
//! never holds up the async threads.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use tempfile::TempPath;
use tokio::io::AsyncWriteExt;

use crate::error::{GatewayError, Result};
use crate::multipart::{self, Event, Parser, PartHead};

/// Fields always kept in memory as text (whatever their `filename`): `params`, and the
/// admin API's `config` and `registry`.
const TEXT_FIELDS: [&str; 3] = ["params", "config", "registry"];
/// Most bytes of the text fields other than `params`, together.
pub const OTHER_TEXT_LIMIT: usize = 1 << 20;
/// A file part up to this size stays in memory: a form of thousands of tiny parts costs no
/// file creations, and is refused as fast as it is read.
const SMALL_FILE: usize = 64 << 10;
/// Most bytes of a form's file parts held in memory together; past it every file part is
/// spooled, so memory stays bounded whatever the parts' number.
const HELD_FILES: usize = 4 << 20;
/// Spool writes are batched to this size.
const SPOOL_BATCH: usize = 1 << 20;

/// The limits of one form.
#[derive(Clone, Debug)]
pub struct FormLimits {
    /// The whole body, in bytes.
    pub body: usize,
    /// The `params` field, in bytes.
    pub params: usize,
    /// What sets the `params` limit, for messages (a flag, or "this endpoint").
    pub params_source: &'static str,
    /// Where files are spooled.
    pub spool_dir: PathBuf,
    /// Most bytes spooled by all requests in progress together.
    pub spool_budget: u64,
}

/// Bytes of uploads spooled by this process and not yet deleted.
static SPOOLED: AtomicU64 = AtomicU64::new(0);

/// A spool file, deleted (and its bytes given back to the spool budget) when dropped.
#[derive(Debug)]
pub struct Spooled {
    /// Always `Some` until dropped.
    path: Option<TempPath>,
    reserved: u64,
}

impl Spooled {
    /// The file.
    pub fn path(&self) -> &Path {
        self.path
            .as_deref()
            .expect("a spool file has its path until dropped")
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        SPOOLED.fetch_sub(self.reserved, Ordering::Relaxed);
        // Removing a big file frees its blocks, and where the file system is mounted with
        // `discard` the kernel trims them before unlink returns: 150-250 ms for 1 GB on ext4
        // here, an async thread held that long (the likely cause of a health probe answered
        // after 1 s in CI). So the file is removed on a blocking thread.
        let Some(path) = self.path.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(path))),
            Err(_) => drop(path),
        }
    }
}

/// Where a part's bytes are.
#[derive(Clone, Debug)]
pub enum Data {
    /// In memory.
    Memory(Bytes),
    /// In a spool file (deleted when the last clone is dropped).
    File {
        /// The file.
        path: Arc<Spooled>,
        /// Its length.
        len: u64,
    },
}

/// One part of a form.
#[derive(Clone, Debug)]
pub struct Part {
    /// Its headers.
    pub head: PartHead,
    /// Its bytes.
    pub data: Data,
}

impl Part {
    /// The field name.
    pub fn name(&self) -> &str {
        &self.head.name
    }

    /// The file name without any directory.
    pub fn base_filename(&self) -> Option<&str> {
        self.head.base_filename()
    }

    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        match &self.data {
            Data::Memory(b) => b.len() as u64,
            Data::File { len, .. } => *len,
        }
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its bytes, read whole from the spool file when there. Blocking: call it on a worker
    /// thread ([`crate::work`]).
    pub fn read_blocking(&self) -> io::Result<Bytes> {
        match &self.data {
            Data::Memory(b) => Ok(b.clone()),
            Data::File { path, .. } => std::fs::read(path.path()).map(Bytes::from),
        }
    }

    /// Its first `n` bytes (all, when shorter). Blocking.
    pub fn read_prefix(&self, n: u64) -> io::Result<Bytes> {
        use std::io::Read;
        match &self.data {
            Data::Memory(b) => Ok(b.slice(..b.len().min(usize::try_from(n).unwrap_or(usize::MAX)))),
            Data::File { path, .. } => {
                let mut head = Vec::new();
                std::fs::File::open(path.path())?.take(n).read_to_end(&mut head)?;
                Ok(Bytes::from(head))
            }
        }
    }

    /// Its bytes in pieces of at most `size` bytes (read from the spool file as they are
    /// consumed), for streaming to a backend.
    pub fn chunks(&self, size: usize) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        match self.data.clone() {
            Data::Memory(b) => {
                let pieces: Vec<io::Result<Bytes>> = (0..b.len())
                    .step_by(size)
                    .map(|at| Ok(b.slice(at..(at + size).min(b.len()))))
                    .collect();
                futures::stream::iter(pieces).left_stream()
            }
            Data::File { path, .. } => futures::stream::once(async move {
                let file = tokio::fs::File::open(path.path()).await;
                // The spool file lives as long as this stream holds `path`.
                (file, path)
            })
            .flat_map(move |(file, path)| match file {
                Ok(file) => tokio_util::io::ReaderStream::with_capacity(file, size)
                    .map(move |piece| {
                        let _keep = &path;
                        piece
                    })
                    .left_stream(),
                Err(e) => futures::stream::once(async move { Err(e) }).right_stream(),
            })
            .right_stream(),
        }
    }
}

/// A parsed form.
#[derive(Clone, Debug, Default)]
pub struct Form {
    /// The parts in order.
    pub parts: Vec<Part>,
}

impl Form {
    /// A form of parts held in memory.
    pub fn from_memory(parts: Vec<multipart::Part>) -> Self {
        Form {
            parts: parts
                .into_iter()
                .map(|p| Part {
                    head: p.head,
                    data: Data::Memory(p.data),
                })
                .collect(),
        }
    }

    /// The first part named `name`.
    pub fn field(&self, name: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.name() == name)
    }

    /// Every part named `name`, in order (a DICOM series' files); cheap clones (spooled
    /// parts share their file).
    pub fn all(&self, name: &str) -> Vec<Part> {
        self.parts.iter().filter(|p| p.name() == name).cloned().collect()
    }

    /// A text field, as UTF-8.
    pub fn text(&self, name: &str) -> Result<Option<&str>, String> {
        match self.field(name) {
            None => Ok(None),
            Some(Part {
                data: Data::Memory(b),
                ..
            }) => std::str::from_utf8(b)
                .map(Some)
                .map_err(|_| format!("the form field {name:?} is not UTF-8 text")),
            Some(_) => Err(format!("the form field {name:?} must be text, not a file")),
        }
    }

    /// The image part: the first one named `datapoint`, `image`, `imageN` or `file`, else the
    /// first part that carries a file name, other than `params` and `label` (deepgrow's
    /// previous mask, which comes with a session's image as often as with an uploaded one).
    pub fn image(&self) -> Option<&Part> {
        self.parts
            .iter()
            .find(|p| multipart::is_image_field(p.name()))
            .or_else(|| {
                self.parts
                    .iter()
                    .find(|p| p.head.filename.is_some() && !matches!(p.name(), "params" | "label"))
            })
    }
}

/// Where the current part's bytes go.
enum Sink {
    /// A file part small enough so far to stay in memory ([`SMALL_FILE`], [`HELD_FILES`]).
    Held(BytesMut),
    Memory {
        buf: BytesMut,
        /// Most bytes this part may have.
        limit: usize,
        is_params: bool,
    },
    /// A file part being spooled.
    File(SpoolFile),
}

/// A file part's spool file, with the bytes not yet written to it.
struct SpoolFile {
    file: tokio::fs::File,
    spooled: Spooled,
    pending: BytesMut,
    len: u64,
}

impl SpoolFile {
    /// Creates one in `dir`.
    async fn create(dir: &Path) -> Result<SpoolFile> {
        let at = dir.to_path_buf();
        let named = tokio::task::spawn_blocking(move || {
            tempfile::Builder::new().prefix("aiaa-upload-").tempfile_in(&at)
        })
        .await
        .map_err(|e| GatewayError::Internal(format!("spool task: {e}")))?
        .map_err(|e| spool_error(dir, e))?;
        let (file, path) = named.into_parts();
        Ok(SpoolFile {
            file: tokio::fs::File::from_std(file),
            spooled: Spooled {
                path: Some(path),
                reserved: 0,
            },
            pending: BytesMut::new(),
            len: 0,
        })
    }

    /// Appends `bytes`, within the spool budget of all uploads in progress.
    async fn write(&mut self, bytes: &[u8], limits: &FormLimits) -> Result<()> {
        // Reserved before it is written: uploads in progress never hold more disk
        // than the budget, whatever their number.
        let n = bytes.len() as u64;
        let before = SPOOLED.fetch_add(n, Ordering::Relaxed);
        if before + n > limits.spool_budget {
            SPOOLED.fetch_sub(n, Ordering::Relaxed);
            return Err(GatewayError::Unavailable {
                message: format!(
                    "the uploads in progress fill the gateway's spool ({} bytes, --gateway-max-spool-bytes, AIAA_GATEWAY_MAX_SPOOL_BYTES); retry shortly",
                    limits.spool_budget
                ),
                retry_after: Some(5),
            });
        }
        self.spooled.reserved += n;
        self.len += n;
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= SPOOL_BATCH {
            let batch = self.pending.split();
            self.file
                .write_all(&batch)
                .await
                .map_err(|e| spool_error(&limits.spool_dir, e))?;
        }
        Ok(())
    }

    /// Writes out what is pending: the part's data.
    async fn finish(mut self, dir: &Path) -> Result<Data> {
        self.file
            .write_all(&self.pending)
            .await
            .map_err(|e| spool_error(dir, e))?;
        self.file.flush().await.map_err(|e| spool_error(dir, e))?;
        Ok(Data::File {
            path: Arc::new(self.spooled),
            len: self.len,
        })
    }
}

/// Reads a multipart body of `content_type` into a form; `declared` is the Content-Length.
pub async fn read(
    content_type: &str,
    declared: Option<u64>,
    body: Body,
    limits: &FormLimits,
) -> Result<Form> {
    let mut parser = Parser::new(content_type).map_err(GatewayError::BadRequest)?;
    if declared.is_some_and(|n| n > limits.body as u64) {
        return Err(GatewayError::TooLarge { limit: limits.body });
    }
    let mut reader = Reader {
        limits,
        form: Form::default(),
        sink: None,
        other_text: 0,
        held_files: 0,
    };
    let mut events = Vec::new();
    let mut total = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(body_error)?;
        total += piece.len() as u64;
        if total > limits.body as u64 {
            return Err(GatewayError::TooLarge { limit: limits.body });
        }
        // After the closing delimiter the rest is read (so the connection stays usable) and
        // ignored.
        if !parser.is_done() {
            parser
                .feed(&piece, &mut events)
                .map_err(GatewayError::BadRequest)?;
            reader.handle(&mut events).await?;
        }
    }
    parser.finish(&mut events).map_err(GatewayError::BadRequest)?;
    reader.handle(&mut events).await?;
    Ok(reader.form)
}

/// The error of a body that could not be read: too slow (408), or cut off.
fn body_error(e: axum::Error) -> GatewayError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(slow) = err.downcast_ref::<crate::conn::BodyTooSlow>() {
            return GatewayError::Timeout(slow.to_string());
        }
        source = err.source();
    }
    GatewayError::BadRequest(format!("the request body could not be read: {e}"))
}

struct Reader<'a> {
    limits: &'a FormLimits,
    form: Form,
    sink: Option<Sink>,
    /// Bytes of text fields other than `params` so far.
    other_text: usize,
    /// Bytes of file parts held in memory so far.
    held_files: usize,
}

impl Reader<'_> {
    async fn handle(&mut self, events: &mut Vec<Event>) -> Result<()> {
        for event in events.drain(..) {
            match event {
                Event::Part(head) => {
                    self.sink = Some(self.open(&head).await?);
                    self.form.parts.push(Part {
                        head,
                        data: Data::Memory(Bytes::new()),
                    });
                }
                Event::Data(bytes) => self.write(bytes).await?,
                Event::PartEnd => {
                    let data = match self.sink.take() {
                        Some(Sink::Memory { buf, .. }) | Some(Sink::Held(buf)) => Data::Memory(buf.freeze()),
                        Some(Sink::File(spool)) => spool.finish(&self.limits.spool_dir).await?,
                        None => Data::Memory(Bytes::new()),
                    };
                    if let Some(part) = self.form.parts.last_mut() {
                        part.data = data;
                    }
                }
            }
        }
        Ok(())
    }

    async fn open(&self, head: &PartHead) -> Result<Sink> {
        let name = head.name.as_str();
        if name == "params" {
            return Ok(Sink::Memory {
                buf: BytesMut::new(),
                limit: self.limits.params,
                is_params: true,
            });
        }
        if !TEXT_FIELDS.contains(&name)
            && (head.filename.is_some() || multipart::is_image_field(name) || name == "data")
        {
            return Ok(Sink::Held(BytesMut::new()));
        }
        Ok(Sink::Memory {
            buf: BytesMut::new(),
            limit: OTHER_TEXT_LIMIT,
            is_params: false,
        })
    }

    async fn write(&mut self, bytes: Bytes) -> Result<()> {
        match self.sink.as_mut() {
            Some(Sink::Memory {
                buf,
                limit,
                is_params,
            }) => {
                if *is_params {
                    if buf.len() + bytes.len() > *limit {
                        return Err(GatewayError::FieldTooLarge(format!(
                            "the form field \"params\" exceeds the limit of {limit} bytes ({})",
                            self.limits.params_source
                        )));
                    }
                } else {
                    self.other_text += bytes.len();
                    if self.other_text > *limit {
                        let field = self.form.parts.last().map_or("", |p| p.name());
                        return Err(GatewayError::FieldTooLarge(format!(
                            "the form field {field:?} exceeds the limit of {limit} bytes for text fields other than params, together"
                        )));
                    }
                }
                buf.extend_from_slice(&bytes);
            }
            Some(Sink::Held(buf)) => {
                if buf.len() + bytes.len() <= SMALL_FILE && self.held_files + bytes.len() <= HELD_FILES {
                    self.held_files += bytes.len();
                    buf.extend_from_slice(&bytes);
                } else {
                    // Too big to hold: what was held goes to a spool file, ahead of these
                    // bytes.
                    let held = std::mem::take(buf);
                    self.held_files -= held.len();
                    let mut spool = SpoolFile::create(&self.limits.spool_dir).await?;
                    spool.write(&held, self.limits).await?;
                    spool.write(&bytes, self.limits).await?;
                    self.sink = Some(Sink::File(spool));
                }
            }
            Some(Sink::File(spool)) => spool.write(&bytes, self.limits).await?,
            None => {}
        }
        Ok(())
    }
}

/// The error of a spool file that could not be created or written.
fn spool_error(dir: &Path, e: io::Error) -> GatewayError {
    GatewayError::Storage(format!(
        "the upload could not be spooled to {} (--gateway-spool-dir, AIAA_GATEWAY_SPOOL_DIR): {e}",
        dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A form of `files` parts of the given sizes (byte `i` of a part is `i % 251`), sent in
    /// 7000-byte pieces so that parts grow across pieces.
    fn body(sizes: &[usize]) -> (String, Body) {
        let mut bytes = Vec::new();
        for (n, size) in sizes.iter().enumerate() {
            bytes.extend_from_slice(
                format!(
                    "--B\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{n}.dcm\"\r\n\r\n"
                )
                .as_bytes(),
            );
            bytes.extend((0..*size).map(|i| (i % 251) as u8));
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"--B--\r\n");
        let pieces: Vec<io::Result<Bytes>> = bytes
            .chunks(7000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        (
            "multipart/form-data; boundary=B".into(),
            Body::from_stream(futures::stream::iter(pieces)),
        )
    }

    fn limits(dir: &Path) -> FormLimits {
        FormLimits {
            body: 1 << 30,
            params: 1 << 20,
            params_source: "test",
            spool_dir: dir.to_path_buf(),
            spool_budget: 1 << 30,
        }
    }

    fn spooled(part: &Part) -> bool {
        matches!(part.data, Data::File { .. })
    }

    #[tokio::test]
    async fn small_files_stay_in_memory_big_ones_and_the_overflow_are_spooled() {
        let dir = tempfile::tempdir().unwrap();
        // 70 parts of 60 KiB pass the held budget (4 MiB) at the 70th; a 100 KiB part is
        // spooled after it was held for its first 64 KiB.
        let mut sizes = vec![60 << 10; 70];
        sizes.insert(3, 100 << 10);
        let (ct, b) = body(&sizes);
        let form = read(&ct, None, b, &limits(dir.path())).await.unwrap();
        assert_eq!(form.parts.len(), 71);
        for (part, size) in form.parts.iter().zip(&sizes) {
            let expect: Vec<u8> = (0..*size).map(|i| (i % 251) as u8).collect();
            assert_eq!(part.read_blocking().unwrap().as_ref(), &expect[..]);
        }
        assert!(spooled(&form.parts[3]), "a part over 64 KiB is spooled");
        let held = form.parts.iter().filter(|p| !spooled(p)).count();
        assert_eq!(held, HELD_FILES / (60 << 10), "held parts up to the 4 MiB budget");
        assert!(spooled(form.parts.last().unwrap()));
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, 71 - held);
        drop(form);
        // Removed on a blocking thread, soon.
        let t = std::time::Instant::now();
        while std::fs::read_dir(dir.path()).unwrap().count() > 0 {
            assert!(
                t.elapsed().as_secs() < 10,
                "spool files are deleted with the form"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
