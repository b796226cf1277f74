//! Images and labels: streamed put (validated id, SHA-256 and size computed while streaming,
//! published whole or not at all, then a small JSON record), streamed get, stat, sorted list
//! by prefix, delete.
//!
//! Layout in the object store: the bytes at `images/<id>` (or `labels/<id>`) and the record at
//! `meta/images/<id>.json`. The record keeps the data object's entity tag, so a reader that
//! races a replacement never pairs one upload's record with another upload's bytes.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aiaa_proto::datastore::v1::{Item, ItemKind};
use aiaa_runtime::names;
use aiaa_runtime::store::Store;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

use crate::blob::{self, Limit};
use crate::disk::Disk;
use crate::error::{DatastoreError, Result};
use crate::format;

/// Most metadata entries one item or session may carry.
pub const MAX_METADATA_ENTRIES: usize = 64;
/// Longest metadata key.
pub const MAX_METADATA_KEY: usize = 128;
/// Longest metadata value.
pub const MAX_METADATA_VALUE: usize = 4096;

/// The kind of a stored item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An image volume.
    Image,
    /// A label volume.
    Label,
}

impl Kind {
    /// The kind a request names; UNSPECIFIED or unknown values are refused.
    pub fn from_proto(value: i32, field: &str) -> Result<Self> {
        match ItemKind::try_from(value) {
            Ok(ItemKind::Image) => Ok(Self::Image),
            Ok(ItemKind::Label) => Ok(Self::Label),
            _ => Err(DatastoreError::InvalidArgument(format!(
                "{field} must be ITEM_KIND_IMAGE or ITEM_KIND_LABEL (got {value})"
            ))),
        }
    }

    /// The contract's value.
    pub fn to_proto(self) -> ItemKind {
        match self {
            Self::Image => ItemKind::Image,
            Self::Label => ItemKind::Label,
        }
    }

    /// "image" or "label", for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Label => "label",
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Self::Image => "images",
            Self::Label => "labels",
        }
    }

    fn id_what(self) -> &'static str {
        match self {
            Self::Image => "image id",
            Self::Label => "label id",
        }
    }
}

/// The JSON record kept next to an item's bytes (also embedded in session records).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredItem {
    /// Its kind.
    pub kind: Kind,
    /// Its id.
    pub id: String,
    /// Its detected format.
    pub format: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256.
    pub sha256: String,
    /// When it was stored, RFC 3339.
    pub created_at: String,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The data object's entity tag when it was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
}

impl StoredItem {
    /// The contract's view.
    pub fn to_proto(&self) -> Item {
        Item {
            kind: self.kind.to_proto() as i32,
            id: self.id.clone(),
            format: self.format.clone(),
            size: self.size,
            sha256: self.sha256.clone(),
            created_at: self.created_at.clone(),
            metadata: self
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

/// Checks free-form metadata against the size limits; names the offending key.
pub fn check_metadata(what: &str, metadata: &HashMap<String, String>) -> Result<BTreeMap<String, String>> {
    if metadata.len() > MAX_METADATA_ENTRIES {
        return Err(DatastoreError::InvalidArgument(format!(
            "{what}: metadata has {} entries, more than {MAX_METADATA_ENTRIES}",
            metadata.len()
        )));
    }
    for (key, value) in metadata {
        if key.is_empty() || key.len() > MAX_METADATA_KEY {
            return Err(DatastoreError::InvalidArgument(format!(
                "{what}: metadata key {key:?} must be 1-{MAX_METADATA_KEY} bytes"
            )));
        }
        if value.len() > MAX_METADATA_VALUE {
            return Err(DatastoreError::InvalidArgument(format!(
                "{what}: metadata value of {key:?} is longer than {MAX_METADATA_VALUE} bytes"
            )));
        }
    }
    Ok(metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// The image and label store.
#[derive(Clone)]
pub struct Items {
    store: Store,
    max_item_bytes: u64,
    disk: Disk,
}

fn describe(kind: Kind, id: &str) -> String {
    format!("{} {id:?}", kind.noun())
}

fn not_found(kind: Kind, id: &str) -> DatastoreError {
    DatastoreError::NotFound(format!("{} not found", describe(kind, id)))
}

impl Items {
    /// Items on `store`, each at most `max_item_bytes`, written while `disk` has room.
    pub fn new(store: Store, max_item_bytes: u64, disk: Disk) -> Self {
        Self {
            store,
            max_item_bytes,
            disk,
        }
    }

    /// The limit uploads are held to.
    pub fn limit(&self) -> Limit {
        Limit {
            bytes: self.max_item_bytes,
            flag: "--max-item-bytes",
        }
    }

    fn data_path(kind: Kind, id: &str) -> Result<object_store::path::Path> {
        blob::path(&format!("{}/{id}", kind.dir()))
    }

    fn meta_path(kind: Kind, id: &str) -> Result<object_store::path::Path> {
        blob::path(&format!("meta/{}/{id}.json", kind.dir()))
    }

    /// Validates an item id (INVALID_ARGUMENT naming the problem).
    pub fn check_id(kind: Kind, id: &str) -> Result<()> {
        names::relative_id(kind.id_what(), id)?;
        Ok(())
    }

    /// An id may not be both an item and a folder of items (a file system cannot hold both).
    async fn check_no_conflict(&self, kind: Kind, id: &str) -> Result<()> {
        let mut end = 0;
        while let Some(pos) = id[end..].find('/') {
            let ancestor = &id[..end + pos];
            if self.read(kind, ancestor).await?.is_some() {
                return Err(DatastoreError::FailedPrecondition(format!(
                    "{} cannot be stored: {} exists, and an id cannot be both an item and a folder",
                    describe(kind, id),
                    describe(kind, ancestor)
                )));
            }
            end += pos + 1;
        }
        let folder = blob::path(&format!("meta/{}/{id}", kind.dir()))?;
        let mut below = self.store.list(Some(&folder));
        if let Some(child) = below.next().await {
            let child =
                child.map_err(|e| DatastoreError::store(format!("list below {}", describe(kind, id)), e))?;
            return Err(DatastoreError::FailedPrecondition(format!(
                "{} cannot be stored: items exist below it (e.g. {}), and an id cannot be both an item and a folder",
                describe(kind, id),
                child.location
            )));
        }
        Ok(())
    }

    /// Stores an item from a byte stream, replacing one with the same id. Nothing changes
    /// unless the whole stream arrives.
    pub async fn put<S>(
        &self,
        kind: Kind,
        id: &str,
        metadata: &HashMap<String, String>,
        expect: &blob::Expect,
        body: S,
    ) -> Result<StoredItem>
    where
        S: Stream<Item = Result<Bytes>> + Send + Unpin,
    {
        Self::check_id(kind, id)?;
        let what = describe(kind, id);
        let metadata = check_metadata(&what, metadata)?;
        self.check_no_conflict(kind, id).await?;
        let written = blob::write(
            &self.store,
            &Self::data_path(kind, id)?,
            body,
            self.limit(),
            &self.disk,
            expect,
            &what,
        )
        .await?;
        let stored = StoredItem {
            kind,
            id: id.to_string(),
            format: format::detect(id, &written.leading).to_string(),
            size: written.size,
            sha256: written.sha256,
            created_at: aiaa_runtime::now_rfc3339(),
            metadata,
            e_tag: written.e_tag,
        };
        blob::write_json(
            &self.store,
            &Self::meta_path(kind, id)?,
            &stored,
            &format!("the record of {what}"),
        )
        .await?;
        tracing::info!(kind = kind.noun(), id, size = stored.size, format = %stored.format, "item stored");
        Ok(stored)
    }

    async fn read(&self, kind: Kind, id: &str) -> Result<Option<StoredItem>> {
        blob::read_json(
            &self.store,
            &Self::meta_path(kind, id)?,
            &format!("the record of {}", describe(kind, id)),
        )
        .await
    }

    /// Changes an item's metadata (`set` added or replaced, then `remove` dropped) without
    /// touching its bytes; the result is checked as an upload's metadata is. Two concurrent
    /// updates of one item: the last record written wins.
    pub async fn update_metadata(
        &self,
        kind: Kind,
        id: &str,
        set: &HashMap<String, String>,
        remove: &[String],
    ) -> Result<StoredItem> {
        let mut stored = self.stat(kind, id).await?;
        let what = describe(kind, id);
        let mut merged: HashMap<String, String> = stored.metadata.clone().into_iter().collect();
        merged.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
        for key in remove {
            merged.remove(key);
        }
        stored.metadata = check_metadata(&what, &merged)?;
        blob::write_json(
            &self.store,
            &Self::meta_path(kind, id)?,
            &stored,
            &format!("the record of {what}"),
        )
        .await?;
        Ok(stored)
    }

    /// Describes an item.
    pub async fn stat(&self, kind: Kind, id: &str) -> Result<StoredItem> {
        Self::check_id(kind, id)?;
        self.read(kind, id).await?.ok_or_else(|| not_found(kind, id))
    }

    /// Opens an item: its record and its bytes in chunks of at most 1 MiB.
    pub async fn open(
        &self,
        kind: Kind,
        id: &str,
    ) -> Result<(StoredItem, BoxStream<'static, Result<Bytes>>)> {
        Self::check_id(kind, id)?;
        let what = describe(kind, id);
        // A replacement may land between reading the record and opening the bytes: the entity
        // tag tells, and the record is read again.
        for attempt in 0..5u32 {
            let stored = self.read(kind, id).await?.ok_or_else(|| not_found(kind, id))?;
            if let Some(bytes) = blob::open(
                &self.store,
                &Self::data_path(kind, id)?,
                stored.e_tag.clone(),
                &what,
            )
            .await?
            {
                return Ok((stored, bytes));
            }
            tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt + 1))).await;
        }
        match self.read(kind, id).await? {
            None => Err(not_found(kind, id)),
            Some(_) => Err(DatastoreError::Store {
                context: format!("read {what}"),
                source: object_store::Error::Generic {
                    store: "datastore",
                    source: "its bytes do not match its record (it is being replaced); retry".into(),
                },
            }),
        }
    }

    /// Items of `kind` whose id starts with `prefix`, sorted by id.
    pub async fn list(&self, kind: Kind, prefix: &str) -> Result<Vec<StoredItem>> {
        let root = format!("meta/{}", kind.dir());
        // List from the deepest folder the prefix names, then filter on the whole prefix.
        let folder = match prefix.rfind('/') {
            Some(pos) if names::relative_id("prefix", &prefix[..pos]).is_ok() => {
                format!("{root}/{}", &prefix[..pos])
            }
            _ => root.clone(),
        };
        let folder = blob::path(&folder)?;
        let mut listing = self.store.list(Some(&folder));
        let mut found = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| DatastoreError::store(format!("list {}s", kind.noun()), e))?;
            let location = meta.location.as_ref();
            let Some(id) = location
                .strip_prefix(root.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .and_then(|rest| rest.strip_suffix(".json"))
            else {
                continue;
            };
            if id.starts_with(prefix) {
                found.push(id.to_string());
            }
        }
        let mut items = Vec::with_capacity(found.len());
        for id in found {
            // A record deleted between the listing and now is simply not listed.
            if let Some(stored) = self.read(kind, &id).await? {
                items.push(stored);
            }
        }
        items.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(items)
    }

    /// Deletes an item; `false` when there was none.
    pub async fn delete(&self, kind: Kind, id: &str) -> Result<bool> {
        Self::check_id(kind, id)?;
        let what = describe(kind, id);
        let had_record = blob::delete(
            &self.store,
            &Self::meta_path(kind, id)?,
            &format!("the record of {what}"),
        )
        .await?;
        let had_bytes = blob::delete(&self.store, &Self::data_path(kind, id)?, &what).await?;
        if had_record {
            tracing::info!(kind = kind.noun(), id, "item deleted");
        }
        Ok(had_record || had_bytes)
    }
}
