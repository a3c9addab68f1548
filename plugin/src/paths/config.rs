//! `rotor/config`: the database and table the mount's rotations move, checked before they are
//! stored; a read never returns the database's password.

use serde_json::json;

use super::{Mount, only};
use crate::config::MountConfig;
use crate::request::{Failure, Operation, Outcome, Request};

/// `read rotor/config` shows the settings; `write rotor/config database_url=… [table=…]` opens
/// the database with them and stores them only if that works.
pub(super) async fn config(mount: &Mount, request: &Request) -> Outcome {
    only(request, &[Operation::Read, Operation::Create, Operation::Update], "read and write")?;
    if request.operation == Operation::Read {
        return Ok(MountConfig::load(mount.kv.storage()).await?.map(|config| config.shown()));
    }
    // In turn with uploads and deletes of components, which check what the settings run.
    let _turn = mount.settings_writes.lock().await;
    let before = MountConfig::load(mount.kv.storage()).await?;
    let config = MountConfig::from_request(request, before.as_ref())?;
    let shown = config.shown();
    mount.runner.configure(config).await?;
    tracing::info!(table = %shown["table"], "settings stored");
    Ok(Some(json!({ "stored": true, "config": shown })))
}

/// Whether the mount has settings, for the `create` capability on `rotor/config`.
pub(super) async fn exist(mount: &Mount) -> Result<bool, Failure> {
    Ok(MountConfig::load(mount.kv.storage()).await?.is_some())
}
