//! `rotor/keys` and `rotor/keys/import`: the mount's KEK versions.

use rotor_codec::Kek;
use serde_json::json;
use zeroize::Zeroizing;

use super::{Mount, only};
use crate::keyring::{KeyRing, Origin};
use crate::request::{Failure, Operation, Outcome, Request};

/// `read rotor/keys` lists the versions; `write rotor/keys` makes v1 in a mount that has none.
/// Later versions come with rotations, which move the rows onto them.
pub(super) async fn ring(mount: &Mount, request: &Request) -> Outcome {
    only(request, &[Operation::Read, Operation::Create, Operation::Update], "read and write")?;
    if request.operation == Operation::Read {
        return Ok(Some(KeyRing::load(&mount.kv).await?.summary()));
    }
    request.only_fields(&[])?;
    let _turn = mount.ring_writes.lock().await;
    let ring = KeyRing::load(&mount.kv).await?;
    if let Some((latest, _)) = ring.latest() {
        return Err(Failure::BadRequest(format!(
            "the key ring already holds v{latest}; a new version comes with a rotation, which moves \
             the rows onto it"
        )));
    }
    let kek = Kek::generate().map_err(|e| anyhow::anyhow!("generating a KEK: {e}"))?;
    let version = KeyRing::add(&mount.kv, None, &kek, Origin::Generated).await?;
    followed(mount, version).await
}

/// Whether the ring holds any version, for the `create` capability on `rotor/keys`.
pub(super) async fn exist(mount: &Mount) -> Result<bool, Failure> {
    Ok(!KeyRing::is_empty(&mount.kv).await?)
}

/// `write rotor/keys/import key=<64 hex> [version=N]`: an application's existing KEK, as the next
/// version or as the version its envelopes already name. The key is never echoed.
pub(super) async fn import(mount: &Mount, request: &Request) -> Outcome {
    only(request, &[Operation::Create, Operation::Update], "write")?;
    request.only_fields(&["key", "version"])?;
    let key = Zeroizing::new(request.required_text("key")?.trim().to_owned());
    let kek = Kek::from_hex(&key).map_err(|e| Failure::BadRequest(format!("field \"key\": {e}")))?;
    let version = request.number("version")?;
    let _turn = mount.ring_writes.lock().await;
    let ring = KeyRing::load(&mount.kv).await?;
    if let Some(held) = ring.version_of(&kek) {
        return Err(Failure::BadRequest(format!("this KEK is already v{held} of the key ring")));
    }
    let version = KeyRing::add(&mount.kv, version, &kek, Origin::Imported).await?;
    followed(mount, version).await
}

/// The reply for a version added, once the seed's KV v2 path (if the mount keeps it in step)
/// has it too. If it could not follow, the version is still the ring's; the error says so, and
/// the next rotation brings the path in step before it moves any wallet.
async fn followed(mount: &Mount, version: u32) -> Outcome {
    if let Err(failure) = mount.runner.follow().await {
        return Err(Failure::BadRequest(format!(
            "v{version} is stored in the key ring, but {failure}; rotor/rotate (or a write to rotor/config) \
             brings the path in step before any wallet moves"
        )));
    }
    Ok(Some(json!({ "version": version })))
}
