//! Downloading datastore items (image or label), with an `.mhd` header's data file.

use std::path::{Path, PathBuf};

use aiaa_proto::datastore::v1::{GetRequest, GetResponse, ItemKind};
use aiaa_proto::framed::{self, FrameError};
use aiaa_runtime::names;
use aiaa_runtime::registry::local_sha256;
use futures::StreamExt;

use crate::error::{Result, TrainerError};

use super::{Fetcher, has_image_suffix, io, remote, write_stream};

impl Fetcher {
    /// Downloads a datastore item to `target` (or keeps an identical file already there);
    /// returns the path, with a suffix added when the id has none and the format is known.
    /// An `.mhd` header brings its data file along.
    pub async fn datastore_item(&self, kind: ItemKind, id: &str, target: &Path) -> Result<PathBuf> {
        let noun = if kind == ItemKind::Label { "label" } else { "image" };
        let what = format!("datastore {noun} {id:?}");
        let broken = |e: &FrameError| match e.status() {
            Some(status) => remote("datastore", &format!("{noun} {id:?}"), status),
            None => TrainerError::Unavailable(format!("{what}: {e}")),
        };
        let stream = self
            .datastore
            .clone()
            .get(GetRequest {
                kind: kind as i32,
                id: id.to_string(),
            })
            .await
            .map_err(|s| remote("datastore", &format!("{noun} {id:?}"), &s))?
            .into_inner();
        let (item, body) = framed::receive::<GetResponse, _>(stream)
            .await
            .map_err(|e| broken(&e))?;
        if item.size > self.max_bytes {
            return Err(TrainerError::FailedPrecondition(format!(
                "{what} has {} bytes, more than --trainer-max-source-bytes {}",
                item.size, self.max_bytes
            )));
        }
        let mut target = target.to_path_buf();
        if !has_image_suffix(id) && !suffix_for_format(&item.format).is_empty() && !id.ends_with(".json") {
            let mut name = target.as_os_str().to_owned();
            name.push(suffix_for_format(&item.format));
            target = PathBuf::from(name);
        }
        let have = local_sha256(&target).await;
        if have
            .as_ref()
            .is_some_and(|(n, sha)| *n == item.size && sha.eq_ignore_ascii_case(&item.sha256))
        {
            tracing::debug!(item = %id, "kept the local copy");
        } else {
            let body = body.map(|piece| piece.map_err(|e| broken(&e)));
            let expect = (!item.sha256.is_empty()).then_some((item.size, item.sha256.as_str()));
            write_stream(body, &target, &what, self.max_bytes, expect).await?;
        }
        if id.to_ascii_lowercase().ends_with(".mhd") {
            self.mhd_companion(kind, id, &target).await?;
        }
        Ok(target)
    }

    /// Fetches the data file an `.mhd` header names (`ElementDataFile`), next to it.
    async fn mhd_companion(&self, kind: ItemKind, id: &str, header: &Path) -> Result<()> {
        let text = tokio::fs::read(header).await.map_err(|e| io(header, e))?;
        let text = String::from_utf8_lossy(&text);
        let Some(file) = text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "ElementDataFile").then(|| v.trim().to_string())
        }) else {
            return Ok(());
        };
        if file.eq_ignore_ascii_case("LOCAL") || file.contains(' ') || file.contains('%') {
            return Ok(());
        }
        let companion_id = match id.rfind('/') {
            Some(pos) => format!("{}/{file}", &id[..pos]),
            None => file.clone(),
        };
        names::relative_id("datastore item id", &companion_id)?;
        let target = header.with_file_name(&file);
        Box::pin(self.datastore_item(kind, &companion_id, &target))
            .await
            .map(|_| ())
    }
}

/// The suffix a datastore format gets when an item's id has no image suffix.
fn suffix_for_format(format: &str) -> &'static str {
    match format {
        "nifti" => ".nii",
        "nifti-gz" => ".nii.gz",
        "mha" => ".mha",
        "mhd" => ".mhd",
        "png" => ".png",
        "dicom" => ".dcm",
        _ => "",
    }
}
