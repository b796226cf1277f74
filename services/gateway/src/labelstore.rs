//! MONAI Label's datastore (images, each with labels under tags such as `final` and
//! `original`, and a free-form `info` object per image and per label) kept in the datastore
//! service, so that it lives wherever the platform's data lives (a folder, compose, Helm).
//!
//! Layout: an image `<id><ext>` is the image item `monailabel/<id><ext>`; its label of tag
//! `<tag>` is the label item `monailabel/<tag>/<id><ext>` (the label's own extension). Each
//! item's metadata holds the MONAI Label id ([`ID_KEY`]), the tag ([`TAG_KEY`], labels) and
//! the info object as JSON text ([`INFO_KEY`]). Ids and tags are 1-128 letters, digits, `-`,
//! `_` and `.` (no spaces or slashes: they become object names); anything else is refused
//! with a message naming the id.

use std::collections::{BTreeMap, HashMap};

use aiaa_proto::datastore::v1::{
    GetRequest, GetResponse, Item, ItemKind, ListRequest, PutHeader, PutRequest, UpdateMetadataRequest,
};
use aiaa_proto::framed;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde_json::{Map, Value};

use crate::app::App;
use crate::backend::timed;
use crate::error::{GatewayError, Result, Subject};

/// The folder of MONAI Label's items in the datastore.
pub const PREFIX: &str = "monailabel/";
/// Metadata key: the MONAI Label image id.
pub const ID_KEY: &str = "monailabel_id";
/// Metadata key: a label's tag.
pub const TAG_KEY: &str = "monailabel_tag";
/// Metadata key: the info object, as JSON text.
pub const INFO_KEY: &str = "info";
/// The tag of submitted (final) labels.
pub const FINAL: &str = "final";
/// The tag of the model's predictions saved by an inference.
pub const ORIGINAL: &str = "original";

/// Extensions recognised in file names, longest first (the rest is the id).
const EXTENSIONS: &[&str] = &[
    ".seg.nrrd",
    ".nii.gz",
    ".nii",
    ".nrrd",
    ".mha",
    ".mhd",
    ".dcm",
    ".zip",
    ".bin",
    ".png",
    ".jpg",
    ".tif",
];

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::BadRequest(msg.into())
}

/// Checks an image id or a tag (`what` names it in the message).
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "{what} {name:?} is not usable: use 1-128 letters, digits, '-', '_' and '.'"
        )))
    }
}

/// The extension of a file name (`.nii.gz` when it has none we know: MONAI Label's default).
pub fn extension(filename: &str) -> &str {
    let base = base_name(filename);
    let lower = base.to_ascii_lowercase();
    for ext in EXTENSIONS {
        if lower.ends_with(ext) && lower.len() > ext.len() {
            return &base[base.len() - ext.len()..];
        }
    }
    match base.rfind('.') {
        Some(dot) if dot > 0 && base.len() - dot <= 10 => &base[dot..],
        _ => ".nii.gz",
    }
}

/// The last component of a client's file name (clients send full local paths).
pub fn base_name(filename: &str) -> &str {
    filename.rsplit(['/', '\\']).next().unwrap_or(filename)
}

/// The image id a file name gives: its base name without the extension.
pub fn id_from_filename(filename: &str) -> &str {
    let base = base_name(filename);
    let ext = extension(base);
    base.strip_suffix(ext).filter(|s| !s.is_empty()).unwrap_or(base)
}

/// One stored image or label.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The datastore item's id.
    pub item_id: String,
    /// Its extension (`.nii.gz`).
    pub ext: String,
    /// Its info object.
    pub info: Map<String, Value>,
    /// Lower-case hex SHA-256 of its bytes.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

impl Entry {
    fn from_item(item: &Item) -> Option<(String, Option<String>, Entry)> {
        let id = item.metadata.get(ID_KEY)?.clone();
        let tag = item.metadata.get(TAG_KEY).cloned();
        let info = item
            .metadata
            .get(INFO_KEY)
            .and_then(|t| serde_json::from_str::<Map<String, Value>>(t).ok())
            .unwrap_or_default();
        let name = item.id.rsplit('/').next().unwrap_or_default();
        let ext = name.strip_prefix(id.as_str()).unwrap_or_default().to_string();
        Some((
            id,
            tag,
            Entry {
                item_id: item.id.clone(),
                ext,
                info,
                sha256: item.sha256.clone(),
                size: item.size,
            },
        ))
    }

    /// `<id><ext>`, the file name clients see.
    pub fn name(&self) -> String {
        self.item_id.rsplit('/').next().unwrap_or_default().to_string()
    }
}

/// An image and its labels by tag.
#[derive(Clone, Debug)]
pub struct Object {
    /// The image.
    pub image: Entry,
    /// Its labels.
    pub labels: BTreeMap<String, Entry>,
}

fn ds_err(status: &tonic::Status) -> GatewayError {
    GatewayError::from_status("datastore", Subject::Other, status)
}

fn kind_of(label: bool) -> ItemKind {
    if label { ItemKind::Label } else { ItemKind::Image }
}

async fn list(app: &App, kind: ItemKind) -> Result<Vec<Item>> {
    let mut client = app.backends.datastore.clone();
    let request = ListRequest {
        kind: kind as i32,
        prefix: PREFIX.to_string(),
    };
    Ok(timed("datastore", app.backends.timeout, async move {
        client.list(request).await.map_err(|s| ds_err(&s))
    })
    .await?
    .into_inner()
    .items)
}

/// Every image with its labels, by id.
pub async fn objects(app: &App) -> Result<BTreeMap<String, Object>> {
    let mut out = BTreeMap::new();
    for item in list(app, ItemKind::Image).await? {
        if let Some((id, _, image)) = Entry::from_item(&item) {
            out.insert(
                id,
                Object {
                    image,
                    labels: BTreeMap::new(),
                },
            );
        }
    }
    for item in list(app, ItemKind::Label).await? {
        if let Some((id, Some(tag), entry)) = Entry::from_item(&item)
            && let Some(object) = out.get_mut(&id)
        {
            object.labels.insert(tag, entry);
        }
    }
    Ok(out)
}

/// One image with its labels, or 404 naming it.
pub async fn object(app: &App, id: &str) -> Result<Object> {
    check_name("image id", id)?;
    objects(app)
        .await?
        .remove(id)
        .ok_or_else(|| GatewayError::NotFound(format!("image {id:?} is not in the datastore")))
}

/// The item id of an image or of a label.
pub fn item_id(id: &str, tag: Option<&str>, ext: &str) -> String {
    match tag {
        None => format!("{PREFIX}{id}{ext}"),
        Some(tag) => format!("{PREFIX}{tag}/{id}{ext}"),
    }
}

/// What is stored: the image `id` (`tag` None) or its label of `tag`, as `<id><ext>`.
#[derive(Clone, Copy, Debug)]
pub struct Name<'a> {
    /// The image id.
    pub id: &'a str,
    /// The label's tag; None for the image.
    pub tag: Option<&'a str>,
    /// The file's extension.
    pub ext: &'a str,
}

/// Stores `size` bytes of `data` as `name` with `info`; `previous`, the entry it replaces,
/// is removed after when it had another extension.
pub async fn put(
    app: &App,
    name: Name<'_>,
    info: &Map<String, Value>,
    data: impl futures::Stream<Item = Bytes> + Send + 'static,
    size: u64,
    previous: Option<&Entry>,
) -> Result<Entry> {
    let Name { id, tag, ext } = name;
    check_name("image id", id)?;
    if let Some(tag) = tag {
        check_name("tag", tag)?;
    }
    let item = item_id(id, tag, ext);
    let mut metadata = HashMap::new();
    metadata.insert(ID_KEY.to_string(), id.to_string());
    if let Some(tag) = tag {
        metadata.insert(TAG_KEY.to_string(), tag.to_string());
    }
    metadata.insert(INFO_KEY.to_string(), Value::Object(info.clone()).to_string());
    let header = PutHeader {
        kind: kind_of(tag.is_some()) as i32,
        id: item.clone(),
        metadata,
        size,
        sha256: String::new(),
    };
    let stream = framed::send::<PutRequest>(header, data);
    let mut client = app.backends.datastore.clone();
    let stored = timed("datastore", app.backends.timeout, async move {
        client.put(stream).await.map_err(|s| ds_err(&s))
    })
    .await?
    .into_inner();
    if let Some(old) = previous.filter(|p| p.item_id != item) {
        delete(app, tag.is_some(), &old.item_id).await?;
    }
    Entry::from_item(&stored)
        .map(|(_, _, e)| e)
        .ok_or_else(|| GatewayError::Internal("the datastore answered an item without its id".into()))
}

/// The bytes of an image (`label` false) or label item.
pub async fn get(app: &App, label: bool, item_id: &str) -> Result<Bytes> {
    let mut client = app.backends.datastore.clone();
    let request = GetRequest {
        kind: kind_of(label) as i32,
        id: item_id.to_string(),
    };
    timed("datastore", app.backends.timeout, async move {
        let answer = client.get(request).await.map_err(|s| ds_err(&s))?.into_inner();
        let (item, mut body) =
            framed::receive::<GetResponse, _>(answer)
                .await
                .map_err(|e| match e.status() {
                    Some(s) => ds_err(s),
                    None => GatewayError::Internal(format!("the datastore's answer: {e}")),
                })?;
        let mut data = BytesMut::with_capacity(usize::try_from(item.size).unwrap_or(0));
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| GatewayError::Internal(format!("the datastore's answer: {e}")))?;
            data.extend_from_slice(&piece);
        }
        Ok(data.freeze())
    })
    .await
}

/// Deletes an item (nothing when it does not exist).
pub async fn delete(app: &App, label: bool, item_id: &str) -> Result<()> {
    let mut client = app.backends.datastore.clone();
    let request = GetRequest {
        kind: kind_of(label) as i32,
        id: item_id.to_string(),
    };
    timed("datastore", app.backends.timeout, async move {
        client.delete(request).await.map_err(|s| ds_err(&s))
    })
    .await?;
    Ok(())
}

/// Replaces an item's info object.
pub async fn set_info(app: &App, label: bool, item_id: &str, info: &Map<String, Value>) -> Result<()> {
    let mut client = app.backends.datastore.clone();
    let request = UpdateMetadataRequest {
        kind: kind_of(label) as i32,
        id: item_id.to_string(),
        set: HashMap::from([(INFO_KEY.to_string(), Value::Object(info.clone()).to_string())]),
        remove: Vec::new(),
    };
    timed("datastore", app.backends.timeout, async move {
        client.update_metadata(request).await.map_err(|s| ds_err(&s))
    })
    .await?;
    Ok(())
}

/// `data` in gRPC chunks.
pub fn chunks(data: Bytes) -> impl futures::Stream<Item = Bytes> + Send + 'static {
    let pieces: Vec<Bytes> = (0..data.len())
        .step_by(aiaa_proto::CHUNK_SIZE)
        .map(|start| data.slice(start..(start + aiaa_proto::CHUNK_SIZE).min(data.len())))
        .collect();
    futures::stream::iter(pieces)
}

/// Seconds since the Unix epoch (the `ts` of MONAI Label's info objects).
pub fn now_ts() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The datastore summary of `/info/` and `GET /datastore/`.
pub fn stats(objects: &BTreeMap<String, Object>) -> Value {
    let mut tags: BTreeMap<&str, u64> = BTreeMap::new();
    for o in objects.values() {
        for tag in o.labels.keys() {
            *tags.entry(tag).or_default() += 1;
        }
    }
    serde_json::json!({
        "total": objects.len(),
        "completed": objects.values().filter(|o| o.labels.contains_key(FINAL)).count(),
        "label_tags": tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_extensions_from_client_file_names() {
        assert_eq!(extension("/tmp/x/MNI152_T1.nii.gz"), ".nii.gz");
        assert_eq!(id_from_filename("/tmp/x/MNI152_T1.nii.gz"), "MNI152_T1");
        assert_eq!(id_from_filename("C:\\data\\head.NRRD"), "head");
        assert_eq!(extension("label.bin"), ".bin");
        assert_eq!(extension("seg.seg.nrrd"), ".seg.nrrd");
        assert_eq!(extension("noext"), ".nii.gz");
        assert_eq!(id_from_filename("a.b.nii"), "a.b");
        assert!(check_name("image id", "spleen_10").is_ok());
        for bad in ["", "a b", "a/b", "..", &"x".repeat(129)] {
            let e = check_name("image id", bad).unwrap_err().to_string();
            assert!(e.contains("image id"), "{e}");
        }
    }
}
