//! `rotor/components/NAME`: components uploaded to the mount, for `rotor/config` to run once
//! their sha256 is pinned there.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::{Mount, only};
use crate::components::{self, FOLDER};
use crate::config::MountConfig;
use crate::request::{Failure, Operation, Outcome, Request};
use crate::timestamp::now;

/// `list rotor/components`: the names uploaded.
pub(super) async fn list(mount: &Mount, request: &Request) -> Outcome {
    only(request, &[Operation::List], "list")?;
    let names = components::names(mount.kv.storage()).await?;
    Ok(Some(json!({ "keys": names })))
}

/// `read` shows a component's digest, size and upload time; `write wasm=<base64> [sha256=…]`
/// stores it (replacing one of the same name); `delete` removes it unless `rotor/config` runs it.
pub(super) async fn component(mount: &Mount, request: &Request, name: &str) -> Outcome {
    only(
        request,
        &[Operation::Read, Operation::Create, Operation::Update, Operation::Delete],
        "read, write and delete",
    )?;
    components::check_name(name)?;
    let storage = mount.kv.storage();
    // In turn with rotor/config, so that what it runs cannot change between the check and the
    // write.
    let _turn = match request.operation {
        Operation::Read => None,
        _ => Some(mount.settings_writes.lock().await),
    };
    let configured = MountConfig::load(storage).await?;
    let pinned = configured
        .as_ref()
        .and_then(MountConfig::uploaded_component)
        .filter(|(uploaded, _)| *uploaded == name)
        .map(|(_, digest)| digest.to_owned());
    let runs_it = pinned.is_some();
    match request.operation {
        Operation::Read => Ok(components::record(storage, name).await?.map(|record| {
            json!({
                "name": name,
                "sha256": record.sha256,
                "size": record.size,
                "uploaded": record.uploaded,
                "configured": runs_it,
            })
        })),
        Operation::Delete => {
            if runs_it {
                return Err(Failure::BadRequest(format!(
                    "rotor/config runs {FOLDER}{name}: write rotor/config component=… (or component=\"\" \
                     for the built-in one) before deleting it"
                )));
            }
            components::delete(storage, name).await?;
            tracing::info!(component = name, "component deleted");
            Ok(None)
        }
        _ => {
            request.only_fields(&["wasm", "sha256"])?;
            let bytes = STANDARD.decode(request.required_text("wasm")?.trim()).map_err(|e| {
                Failure::BadRequest(format!("field \"wasm\" must be the component in base64: {e}"))
            })?;
            let expected = request.text("sha256")?.map(str::trim);
            let record = components::put(storage, name, bytes, expected, pinned.as_deref(), now()).await?;
            tracing::info!(component = name, sha256 = %record.sha256, size = record.size, "component uploaded");
            Ok(Some(json!({
                "name": name,
                "sha256": record.sha256,
                "size": record.size,
                "run_it": format!(
                    "write rotor/config component={FOLDER}{name} component_sha256={}",
                    record.sha256
                ),
            })))
        }
    }
}

/// Whether component `name` was uploaded, for the `create` capability.
pub(super) async fn exist(mount: &Mount, name: &str) -> Result<bool, Failure> {
    Ok(components::record(mount.kv.storage(), name).await?.is_some())
}
