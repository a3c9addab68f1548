//! Components uploaded to the mount (`rotor/components/NAME`), so that a platform team swaps
//! rotation logic in a running OpenBao without access to its plugin directory. Each is kept in
//! the mount's storage as chunks under its digest, then a record naming that digest: the
//! record is written last, so a reader never sees a half-written component, and a component
//! replaced under the same name never mixes with the one before. Like a file in the plugin
//! directory, an uploaded component runs only when `rotor/config` pins its sha256.

use std::sync::Arc;

use anyhow::Context;
use rotor::component::{ComponentChoice, ComponentSource};
use serde::{Deserialize, Serialize};

use crate::request::Failure;
use crate::storage::Storage;

/// Where uploaded components are kept, and how `rotor/config` names one: `components/NAME`.
pub const FOLDER: &str = "components/";

/// Largest component the mount takes. rotor's own is a few hundred KiB; 16 MiB in base64 stays
/// under OpenBao's default 32 MiB request limit (`max_request_size`).
pub const MAX_BYTES: usize = 16 << 20;

/// Largest request the plugin decodes: a component of [`MAX_BYTES`] in base64, with room for
/// the request's other fields.
pub const MAX_REQUEST_BYTES: usize = MAX_BYTES / 3 * 4 + (1 << 20);

/// Bytes per storage entry: under the 1 MiB that OpenBao's raft storage takes by default
/// (`max_entry_size`), base64 and the entry's key included.
const CHUNK: usize = 512 << 10;

/// What the mount keeps about an uploaded component.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Uploaded {
    /// Hex sha256 of the component: what `rotor/config` pins.
    pub sha256: String,
    /// Its size in bytes.
    pub size: usize,
    /// The storage entries it is split into.
    chunks: usize,
    /// When it was uploaded (RFC 3339).
    pub uploaded: String,
}

/// A component's name as uploads take it: letters, digits, `.`, `_` and `-`, up to 64.
pub fn check_name(name: &str) -> Result<(), Failure> {
    let fine = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && name != "."
        && name != "..";
    if fine {
        Ok(())
    } else {
        Err(Failure::BadRequest(format!(
            "{name:?} is not a component name: use 1 to 64 letters, digits, '.', '_' or '-'"
        )))
    }
}

fn record_key(name: &str) -> String {
    format!("{FOLDER}{name}")
}

fn chunks_folder(name: &str, sha256: &str) -> String {
    format!("{FOLDER}{name}/{sha256}/")
}

/// Stores `bytes` as component `name`, replacing any component of that name, and says what was
/// stored. `bytes` must be a WebAssembly component of at most [`MAX_BYTES`], with the sha256
/// `expected` if the uploader gave one, and the digest `pinned` if `rotor/config` runs `name`:
/// the component a mount runs is never replaced under it.
pub async fn put(
    storage: &Storage,
    name: &str,
    bytes: Vec<u8>,
    expected: Option<&str>,
    pinned: Option<&str>,
    uploaded: String,
) -> Result<Uploaded, Failure> {
    check_name(name)?;
    if bytes.len() > MAX_BYTES {
        return Err(Failure::BadRequest(format!(
            "the component is {} bytes, over the {MAX_BYTES} the mount takes",
            bytes.len()
        )));
    }
    let source = ComponentSource::from_bytes(bytes, format!("{FOLDER}{name}"))
        .map_err(|e| Failure::BadRequest(format!("{e:#}")))?;
    if let Some(expected) = expected
        && !expected.eq_ignore_ascii_case(&source.sha256)
    {
        return Err(Failure::BadRequest(format!(
            "the upload has sha256 {}, not the {expected} given: it was damaged on the way or is \
             another file; nothing was stored",
            source.sha256
        )));
    }
    if let Some(pinned) = pinned
        && pinned != source.sha256
    {
        return Err(Failure::BadRequest(format!(
            "rotor/config runs {FOLDER}{name} pinned at sha256 {pinned}; this upload has {}. Upload it \
             under another name, pin that in rotor/config, then delete this one; nothing was stored",
            source.sha256
        )));
    }
    let bytes = source.bytes();
    let folder = chunks_folder(name, &source.sha256);
    for (index, chunk) in bytes.chunks(CHUNK).enumerate() {
        storage.put_bytes(&format!("{folder}{index}"), chunk.to_vec()).await?;
    }
    let record = Uploaded {
        sha256: source.sha256.clone(),
        size: bytes.len(),
        chunks: bytes.len().div_ceil(CHUNK),
        uploaded,
    };
    storage.put(&record_key(name), &record).await?;
    remove_chunks(storage, name, Some(&record.sha256)).await?;
    Ok(record)
}

/// What the mount keeps about component `name`, if it was uploaded.
pub async fn record(storage: &Storage, name: &str) -> anyhow::Result<Option<Uploaded>> {
    storage.get(&record_key(name)).await
}

/// Component `name`, read back and checked against the digest it was stored under, for a run.
pub async fn load(storage: &Storage, name: &str) -> Result<(ComponentChoice, Uploaded), Failure> {
    let record = record(storage, name).await?.ok_or_else(|| {
        Failure::BadRequest(format!(
            "no component was uploaded as {FOLDER}{name}: write it to rotor/{FOLDER}{name} first"
        ))
    })?;
    let folder = chunks_folder(name, &record.sha256);
    let mut bytes = Vec::with_capacity(record.size);
    for index in 0..record.chunks {
        let chunk = storage.get_bytes(&format!("{folder}{index}")).await?.with_context(|| {
            format!("part {index} of component {FOLDER}{name} is missing from the mount's storage")
        })?;
        bytes.extend_from_slice(&chunk);
    }
    let origin = format!("{FOLDER}{name}");
    let source = ComponentSource::from_bytes(bytes, origin.clone()).map_err(Failure::Internal)?;
    if source.sha256 != record.sha256 {
        return Err(Failure::Internal(anyhow::anyhow!(
            "component {origin} reads back with sha256 {}, not the {} it was stored with: upload it again",
            source.sha256,
            record.sha256
        )));
    }
    let choice = ComponentChoice::Bytes { origin, bytes: Arc::from(source.bytes()) };
    Ok((choice, record))
}

/// The names of the uploaded components.
pub async fn names(storage: &Storage) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> =
        storage.list(FOLDER).await?.into_iter().filter(|key| !key.ends_with('/')).collect();
    names.sort();
    Ok(names)
}

/// Removes component `name`: its record first, so that it is gone at once, then its chunks.
pub async fn delete(storage: &Storage, name: &str) -> anyhow::Result<()> {
    storage.delete(&record_key(name)).await?;
    remove_chunks(storage, name, None).await
}

/// Removes the chunks stored for `name` under any digest but `keep`: those of a component
/// replaced since, or of an upload that stopped before its record was written.
async fn remove_chunks(storage: &Storage, name: &str, keep: Option<&str>) -> anyhow::Result<()> {
    let folder = format!("{FOLDER}{name}/");
    for digest in storage.list(&folder).await? {
        let Some(digest) = digest.strip_suffix('/') else { continue };
        if Some(digest) == keep {
            continue;
        }
        let chunks = format!("{folder}{digest}/");
        for chunk in storage.list(&chunks).await? {
            storage.delete(&format!("{chunks}{chunk}")).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain() {
        assert!(check_name("rotation-v2.1_b").is_ok());
        for bad in ["", ".", "..", "a/b", "../x", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    // The largest upload, in base64, fits the plugin's request limit, which stays under
    // OpenBao's default 32 MiB request size.
    const _: () = assert!(MAX_BYTES.div_ceil(3) * 4 < MAX_REQUEST_BYTES && MAX_REQUEST_BYTES < 32 << 20);
}
