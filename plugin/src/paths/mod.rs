//! The mount's paths, OpenBao style: `bao read rotor/keys`, `bao write rotor/encrypt/<id>`.
//! Each path is a function from a [`Request`] to an [`Outcome`]; ACL policies on these paths
//! decide who may call which, as for any mount.

mod crypt;
mod keys;

use tokio::sync::Mutex;

use crate::request::{Failure, Operation, Outcome, Request};
use crate::storage::Storage;

/// One mounted instance of the plugin: its storage, and the lock that keeps its writes to the
/// key ring in turn (OpenBao runs one plugin process per mount, so a process-wide lock does).
pub struct Mount {
    storage: Storage,
    ring_writes: Mutex<()>,
}

impl Mount {
    /// The mount over its storage.
    pub fn new(storage: Storage) -> Mount {
        Mount { storage, ring_writes: Mutex::new(()) }
    }

    /// Answers one request.
    pub async fn handle(&self, request: Request) -> Outcome {
        let segments: Vec<&str> = request.path.split('/').collect();
        match (segments.as_slice(), &request.operation) {
            // OpenBao's rollback manager calls every mount now and then; rotor keeps no
            // half-done work for it to undo.
            (_, Operation::Other(op)) if op == "rollback" => Ok(None),
            (["keys"], _) => keys::ring(self, &request).await,
            (["keys", "import"], _) => keys::import(self, &request).await,
            (["encrypt"], _) => crypt::encrypt_batch(self, &request).await,
            (["encrypt", id], _) => crypt::encrypt_one(self, &request, id).await,
            (["decrypt"], _) => crypt::decrypt_batch(self, &request).await,
            (["decrypt", id], _) => crypt::decrypt_one(self, &request, id).await,
            _ => Err(Failure::NoPath(request.path.clone())),
        }
    }

    /// Whether a write to `path` would create what it names, for OpenBao's `create` versus
    /// `update` capabilities; `None` for paths without the distinction.
    pub async fn exists(&self, path: &str) -> Result<Option<bool>, Failure> {
        match path {
            "keys" => Ok(Some(keys::exist(self).await?)),
            _ => Ok(None),
        }
    }
}

/// Refuses an operation a path does not take, naming the ones it does.
fn only(request: &Request, allowed: &[Operation], takes: &str) -> Result<(), Failure> {
    if allowed.contains(&request.operation) {
        Ok(())
    } else {
        Err(Failure::Unsupported(format!("{} takes {takes}", request.path)))
    }
}
