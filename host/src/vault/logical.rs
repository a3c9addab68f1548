//! Calls to any mount's own paths, JSON in and out, as `bao read` and `bao write` make them:
//! how `rotor --via-plugin` drives the OpenBao plugin's mount.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::client::VaultClient;
use super::config::check_path;
use super::error::{VaultError, decode};
use super::retry::Replay;

impl VaultClient {
    /// Reads `path` (e.g. `rotor/status`): its `data`, `None` if there is nothing there.
    pub async fn logical_read(&self, path: &str) -> Result<Option<Value>, VaultError> {
        check_path("path", path)?;
        let reply = self.send(Method::GET, path, None, Replay::Safe).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !reply.status.is_success() {
            return Err(self.fail(reply, path, "read").await);
        }
        Ok(Some(data(path, &reply.body)?))
    }

    /// Writes `body` to `path`: its `data` (`null` when the answer has none). Resent only when
    /// Vault surely did not apply it: a write to a mount may start work.
    pub async fn logical_write(&self, path: &str, body: &Value) -> Result<Value, VaultError> {
        check_path("path", path)?;
        let encoded =
            serde_json::to_vec(body).map_err(|e| VaultError::Config(format!("encoding {path}: {e}")))?;
        let reply = self.send(Method::POST, path, Some(&encoded), Replay::IfNotApplied).await?;
        if !reply.status.is_success() {
            return Err(self.fail(reply, path, "update").await);
        }
        data(path, &reply.body)
    }
}

/// The `data` of an answer's body; `null` for an empty body (204).
fn data(path: &str, body: &[u8]) -> Result<Value, VaultError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    let mut answer: Value = decode(path, body)?;
    Ok(answer["data"].take())
}
