//! The mount's paths, OpenBao style: `bao read rotor/keys`, `bao write rotor/encrypt/<id>`.
//! Each path is a function from a [`Request`] to an [`Outcome`]; ACL policies on these paths
//! decide who may call which, as for any mount.

mod components;
mod config;
mod crypt;
mod keys;
mod run;

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::kv::MountKv;
use crate::request::{Failure, Operation, Outcome, Request};
use crate::runner::Runner;
use crate::storage::Storage;

/// One mounted instance of the plugin: its KV, the runner of its rotations, and the locks that
/// keep the plugin's own changes to the key ring, and to its settings and uploaded components,
/// in turn (OpenBao runs one plugin process per mount, so process-wide locks do).
pub struct Mount {
    kv: Arc<MountKv>,
    runner: Runner,
    ring_writes: Mutex<()>,
    settings_writes: Mutex<()>,
}

impl Mount {
    /// The mount over its storage.
    pub fn new(storage: Storage) -> Mount {
        let kv = Arc::new(MountKv::new(storage));
        Mount {
            runner: Runner::new(kv.clone()),
            kv,
            ring_writes: Mutex::new(()),
            settings_writes: Mutex::new(()),
        }
    }

    /// Stops what runs in the background, for OpenBao's cleanup.
    pub async fn stop(&self) {
        self.runner.stop().await;
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
            (["config"], _) => config::config(self, &request).await,
            (["components"] | ["components", ""], _) => components::list(self, &request).await,
            (["components", name], _) => components::component(self, &request, name).await,
            (["rotate"], _) => run::rotate(self, &request).await,
            (["rollback"], _) => run::rollback(self, &request).await,
            (["prune"], _) => run::prune(self, &request).await,
            (["validate"], _) => run::validate(self, &request).await,
            (["status"], _) => run::status(self, &request).await,
            (["history"], _) => run::history(self, &request).await,
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
        match path.split_once('/') {
            None if path == "keys" => Ok(Some(keys::exist(self).await?)),
            None if path == "config" => Ok(Some(config::exist(self).await?)),
            Some(("components", name)) if !name.is_empty() && !name.contains('/') => {
                Ok(Some(components::exist(self, name).await?))
            }
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
