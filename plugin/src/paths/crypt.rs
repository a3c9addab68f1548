//! `rotor/encrypt` and `rotor/decrypt`: rotor's envelope for applications, Transit-shaped, with
//! the wallet id bound into every ciphertext as associated data (the binding Transit's rewrap
//! drops). A ciphertext sealed for one id does not open under another.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rotor_codec::{Decoded, Format, Kek};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{Mount, only};
use crate::config::MountConfig;
use crate::keyring::KeyRing;
use crate::mirror;
use crate::request::{Failure, Operation, Outcome, Request};

/// The most items one batch request may carry; larger batches are refused, not truncated.
const MAX_BATCH: usize = 10_000;

/// `write rotor/encrypt/<id> plaintext=<base64>` → `ciphertext`, `key_version`.
pub(super) async fn encrypt_one(mount: &Mount, request: &Request, id: &str) -> Outcome {
    only(request, &[Operation::Create, Operation::Update], "write")?;
    request.only_fields(&["plaintext"])?;
    let ring = KeyRing::load(&mount.kv).await?;
    let (version, kek) = latest(&ring)?;
    sealable(mount, version).await?;
    let ciphertext = seal(kek, version, id, request.required_text("plaintext")?)?;
    Ok(Some(json!({ "ciphertext": ciphertext, "key_version": version })))
}

/// Refuses to seal under `version` while the seed's KV v2 path, if the mount keeps it in step,
/// lacks it: applications reading the path could not open the ciphertext.
async fn sealable(mount: &Mount, version: u32) -> Result<(), Failure> {
    let config = MountConfig::load(mount.kv.storage()).await?;
    let Some(settings) = config.as_ref().and_then(MountConfig::mirror) else { return Ok(()) };
    if mirror::holds(mount.kv.storage(), settings, version).await? {
        return Ok(());
    }
    Err(Failure::BadRequest(format!(
        "v{version} has not reached {} yet, so applications reading it could not open this \
         ciphertext: rotor/rotate or a write to rotor/config brings the path in step first",
        settings.place()
    )))
}

/// `write rotor/decrypt/<id> ciphertext=rotor:v…` → `plaintext` (base64).
pub(super) async fn decrypt_one(mount: &Mount, request: &Request, id: &str) -> Outcome {
    only(request, &[Operation::Create, Operation::Update], "write")?;
    request.only_fields(&["ciphertext"])?;
    let ring = KeyRing::load(&mount.kv).await?;
    let plaintext = open(&ring, id, request.required_text("ciphertext")?)?;
    Ok(Some(json!({ "plaintext": *plaintext })))
}

/// `write rotor/encrypt batch_input=[{id, plaintext}, …]` → `batch_results`, in order; an item
/// that fails carries its `error` and the others go on.
pub(super) async fn encrypt_batch(mount: &Mount, request: &Request) -> Outcome {
    only(request, &[Operation::Create, Operation::Update], "write")?;
    let items = batch(request)?;
    let ring = KeyRing::load(&mount.kv).await?;
    let (version, kek) = latest(&ring)?;
    sealable(mount, version).await?;
    let results: Vec<Value> = items
        .iter()
        .map(|item| {
            item_fields(item, "plaintext")
                .and_then(|(id, plaintext)| seal(kek, version, id, plaintext).map(|c| (id, c)))
                .map_or_else(
                    |failure| item_error(item, &failure),
                    |(id, ciphertext)| json!({ "id": id, "ciphertext": ciphertext, "key_version": version }),
                )
        })
        .collect();
    Ok(Some(json!({ "batch_results": results })))
}

/// `write rotor/decrypt batch_input=[{id, ciphertext}, …]` → `batch_results`, in order.
pub(super) async fn decrypt_batch(mount: &Mount, request: &Request) -> Outcome {
    only(request, &[Operation::Create, Operation::Update], "write")?;
    let items = batch(request)?;
    let ring = KeyRing::load(&mount.kv).await?;
    let results: Vec<Value> = items
        .iter()
        .map(|item| {
            item_fields(item, "ciphertext")
                .and_then(|(id, ciphertext)| open(&ring, id, ciphertext).map(|p| (id, p)))
                .map_or_else(
                    |failure| item_error(item, &failure),
                    |(id, plaintext)| json!({ "id": id, "plaintext": *plaintext }),
                )
        })
        .collect();
    Ok(Some(json!({ "batch_results": results })))
}

fn latest(ring: &KeyRing) -> Result<(u32, &Kek), Failure> {
    ring.latest().ok_or_else(|| {
        Failure::BadRequest(
            "the key ring is empty: write rotor/keys to make v1, or rotor/keys/import an existing KEK"
                .to_owned(),
        )
    })
}

fn check_id(id: &str) -> Result<&str, Failure> {
    if id.is_empty() { Err(Failure::BadRequest("the wallet id is empty".to_owned())) } else { Ok(id) }
}

fn seal(kek: &Kek, version: u32, id: &str, plaintext_b64: &str) -> Result<String, Failure> {
    let plaintext = Zeroizing::new(
        STANDARD
            .decode(plaintext_b64.trim())
            .map_err(|_| Failure::BadRequest("\"plaintext\" must be base64".to_owned()))?,
    );
    rotor_codec::seal(kek, version, check_id(id)?, &plaintext)
        .map_err(|e| Failure::Internal(anyhow::anyhow!("{e}")))
}

/// Opens an envelope under the version it names; the plaintext comes back as base64.
fn open(ring: &KeyRing, id: &str, ciphertext: &str) -> Result<Zeroizing<String>, Failure> {
    let id = check_id(id)?;
    let decoded =
        Decoded::parse(ciphertext).map_err(|e| Failure::BadRequest(format!("\"ciphertext\": {e}")))?;
    let version = match decoded.format() {
        Format::Envelope { kek_version } => kek_version,
        Format::Legacy => {
            return Err(Failure::BadRequest(
                "this is a legacy ciphertext, which names no KEK version; only rotor envelopes \
                 (rotor:v<N>:…) decrypt here"
                    .to_owned(),
            ));
        }
    };
    let kek = ring.get(version).ok_or_else(|| {
        Failure::BadRequest(format!(
            "the ciphertext names KEK v{version}, which this mount's key ring does not hold"
        ))
    })?;
    let plaintext = decoded
        .open(kek, id)
        .map_err(|e| Failure::BadRequest(format!("the ciphertext for id {id:?} does not decrypt: {e}")))?;
    Ok(Zeroizing::new(STANDARD.encode(&*plaintext)))
}

fn batch(request: &Request) -> Result<&Vec<Value>, Failure> {
    request.only_fields(&["batch_input"])?;
    let items = match request.data.get("batch_input") {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(Failure::BadRequest("\"batch_input\" must be a list of objects".to_owned())),
        None => {
            return Err(Failure::BadRequest(
                "give \"batch_input\" (a list of objects), or put the wallet id in the path".to_owned(),
            ));
        }
    };
    if items.len() > MAX_BATCH {
        return Err(Failure::BadRequest(format!(
            "\"batch_input\" holds {} items; at most {MAX_BATCH} go in one request",
            items.len()
        )));
    }
    Ok(items)
}

fn item_fields<'a>(item: &'a Value, field: &str) -> Result<(&'a str, &'a str), Failure> {
    let text = |name: &str| {
        item.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| Failure::BadRequest(format!("each item needs \"id\" and \"{field}\" as strings")))
    };
    Ok((text("id")?, text(field)?))
}

fn item_error(item: &Value, failure: &Failure) -> Value {
    json!({ "id": item.get("id").cloned().unwrap_or(Value::Null), "error": failure.to_string() })
}
