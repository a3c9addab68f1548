//! The mount's rotations, run by rotor's host library: the same [`App`], component, journal and
//! crash-safe walk as the `rotor` CLI, with the mount's KV v2 ([`MountKv`]) in place of Vault's.
//!
//! A rotation runs in a thread of its own: `rotor/rotate` returns once it has started and
//! `rotor/status` follows it. What it came to is kept in memory for `status`; what
//! outlives the process (a kill, a reload, OpenBao restarting) is the journal in the database,
//! from which the next `rotor/rotate` resumes, as `rotor rotate` does.

use std::path::PathBuf;
use std::sync::{Arc, Mutex as SyncMutex, PoisonError};
use std::time::Duration;

use rotor::app::App;
use rotor::bindings::types::OutputFormat;
use rotor::component::{ComponentChoice, ComponentSource};
use rotor::grants::Access;
use rotor::progress::Reporter;
use rotor::rotation::RotateRequest;
use rotor::shutdown::{Shutdown, Signal};
use rotor::vault::{KvSource, KvStore};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Mutex, oneshot};

use crate::components;
use crate::config::{Component, MountConfig, in_mount_words};
use crate::kv::MountKv;
use crate::mirror::{Mirror, MirrorSettings, MirroredKv};
use crate::request::Failure;
use crate::timestamp::now;

/// How long OpenBao's cleanup waits for a rotation to stop at a batch's end.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// Where a rotation run by this process stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum RunState {
    /// None started since the plugin process started.
    #[default]
    Idle,
    /// Moving wallets.
    Running,
    /// Done; the report says how it went.
    Finished,
    /// Stopped by an error, which is kept; `rotor/rotate` resumes it.
    Failed,
    /// Stopped because OpenBao stopped the plugin; `rotor/rotate` resumes it.
    Stopped,
}

/// The last rotation this process ran, as `rotor/status` shows it.
#[derive(Clone, Debug, Default, Serialize)]
struct RunRecord {
    state: RunState,
    started: Option<String>,
    finished: Option<String>,
    report: Option<Value>,
    error: Option<String>,
}

/// The host library opened for the stored settings.
struct Opened {
    config: MountConfig,
    app: Arc<App>,
}

/// The mirror of the seed's path for the stored settings, kept so that this process's syncs
/// take turns.
type Following = Option<(MirrorSettings, Arc<Mirror>)>;

/// Runs the mount's rotations and the commands around them.
pub struct Runner {
    kv: Arc<MountKv>,
    opened: Mutex<Option<Opened>>,
    following: Mutex<Following>,
    run: Arc<SyncMutex<RunRecord>>,
    /// Says when the running rotation's thread is done.
    task: SyncMutex<Option<oneshot::Receiver<()>>>,
    shutdown: Shutdown,
}

/// An error of the host library, for the operator: the message names the fix (and, from
/// rotor's own errors, never a secret or a password).
pub fn refused(error: anyhow::Error) -> Failure {
    Failure::BadRequest(in_mount_words(&format!("{error:#}")))
}

/// A command of the host library that failed: logged as the plugin's own failure, its message
/// naming the limit to raise as `rotor/config`'s field, not rotor.toml's.
pub fn host_failure(error: anyhow::Error) -> Failure {
    Failure::Internal(anyhow::anyhow!(in_mount_words(&format!("{error:#}"))))
}

impl Runner {
    /// A runner over the mount's KV.
    pub fn new(kv: Arc<MountKv>) -> Runner {
        Runner {
            kv,
            opened: Mutex::new(None),
            following: Mutex::new(None),
            run: Arc::default(),
            task: SyncMutex::new(None),
            shutdown: Shutdown::new(),
        }
    }

    /// Opens the host library for `config`: checks the component against its pinned digest,
    /// compiles it, connects to the database and checks the table, creating rotor's journal
    /// tables. An error says what is wrong with the settings.
    pub async fn open(&self, config: &MountConfig) -> Result<App, Failure> {
        let component = match config.component() {
            Some((Component::File(name), pinned)) => {
                Some(pinned_file(plugin_dir()?.join(name), pinned).await?)
            }
            Some((Component::Uploaded(name), pinned)) => {
                let (choice, uploaded) = components::load(self.kv.storage(), name).await?;
                refuse_unpinned(&choice.origin(), &uploaded.sha256, pinned)?;
                Some(choice)
            }
            None => None,
        };
        let settings = config.settings(component)?;
        // The mirror is checked first (address, credential) but brings the path in step only
        // once the rest of the settings proved good, and is kept only then.
        let mirror = match config.mirror() {
            Some(settings) => Some((settings, self.checked_mirror(settings).await?)),
            None => None,
        };
        let kv: Arc<dyn KvStore> = match &mirror {
            Some((_, mirror)) => Arc::new(MirroredKv::new(self.kv.clone(), mirror.clone())),
            None => self.kv.clone(),
        };
        let app = App::open(settings, KvSource::Store(kv), true).await.map_err(refused)?;
        if let Some((settings, mirror)) = mirror {
            mirror.sync(&self.kv).await?;
            *self.following.lock().await = Some((settings.clone(), mirror));
        }
        Ok(app)
    }

    /// The mirror for `settings`, its address and credential checked: the one this process
    /// keeps if the settings are the same, else a new one (kept by the caller once it worked).
    async fn checked_mirror(&self, settings: &MirrorSettings) -> Result<Arc<Mirror>, Failure> {
        if let Some((_, mirror)) = self.following.lock().await.as_ref().filter(|(kept, _)| kept == settings) {
            return Ok(mirror.clone());
        }
        let mirror = Arc::new(settings.mirror()?);
        mirror.check().await?;
        Ok(mirror)
    }

    /// Brings the seed's KV v2 path in step with the key ring, if the stored settings keep one:
    /// after the ring changed outside a rotation (`rotor/keys`, `rotor/keys/import`), and
    /// before every rotation.
    pub async fn follow(&self) -> Result<(), Failure> {
        let Some(config) = MountConfig::load(self.kv.storage()).await? else { return Ok(()) };
        if let Some(settings) = config.mirror() {
            let mirror = self.checked_mirror(settings).await?;
            mirror.sync(&self.kv).await?;
            *self.following.lock().await = Some((settings.clone(), mirror));
        }
        Ok(())
    }

    /// Checks `config` by opening it, then stores it: a mount is never left with settings that
    /// cannot run.
    pub async fn configure(&self, config: MountConfig) -> Result<(), Failure> {
        // A rotation keeps the settings it began with; new ones would not reach it, so that an
        // operator could believe it moved to another database.
        if self.is_running() {
            return Err(Failure::BadRequest(
                "a rotation is running: write rotor/config once rotor/status shows it done".into(),
            ));
        }
        let mut opened = self.opened.lock().await;
        let app = Arc::new(self.open(&config).await?);
        config.store(self.kv.storage()).await?;
        *opened = Some(Opened { config, app });
        Ok(())
    }

    /// The host library for the stored settings, opened once and again when they change.
    pub async fn app(&self) -> Result<Arc<App>, Failure> {
        let config = MountConfig::load(self.kv.storage()).await?.ok_or_else(|| {
            Failure::BadRequest(
                "the mount has no database to work on yet: write rotor/config database_url=… first".into(),
            )
        })?;
        let mut opened = self.opened.lock().await;
        if let Some(opened) = opened.as_ref().filter(|opened| opened.config == config) {
            return Ok(opened.app.clone());
        }
        let app = Arc::new(self.open(&config).await?);
        *opened = Some(Opened { config, app: app.clone() });
        Ok(app)
    }

    /// Starts a rotation (or resumes the unfinished one) in a thread of its own; with `restore`,
    /// a rollback: the next KEK version holds the key of version `restore` again. What it says
    /// at once: whether it resumes.
    pub async fn rotate(&self, reencrypt: bool, restore: Option<u32>) -> Result<Value, Failure> {
        let app = self.app().await?;
        // No wallet moves onto a version applications reading the seed's path cannot find: a
        // version stored before a failed sync (or a crash) reaches the path first.
        self.follow().await?;
        if self.shutdown.requested().is_some() {
            return Err(Failure::BadRequest(
                "the plugin is stopping; try again once OpenBao restarted it".into(),
            ));
        }
        {
            let mut run = self.run.lock().unwrap_or_else(PoisonError::into_inner);
            if run.state == RunState::Running {
                return Err(Failure::BadRequest(format!(
                    "a rotation is running since {}: follow it at rotor/status",
                    run.started.as_deref().unwrap_or("now")
                )));
            }
            *run = RunRecord { state: RunState::Running, started: Some(now()), ..RunRecord::default() };
        }
        let prepared = async {
            let unfinished = app.database().our_unfinished_rotation().await?;
            let instance = app.instance(Access::Rotate, Reporter::silent()).await?;
            anyhow::Ok((unfinished, instance))
        };
        let (unfinished, instance) = match prepared.await {
            Ok(prepared) => prepared,
            Err(error) => {
                self.record(RunState::Failed, None, Some(in_mount_words(&format!("{error:#}"))));
                return Err(refused(error));
            }
        };
        let request = RotateRequest {
            dry_run: false,
            reencrypt,
            resume: false,
            strict: false,
            output_format: OutputFormat::Envelope,
        };
        let (run, shutdown) = (self.run.clone(), self.shutdown.clone());
        let (finished, task) = oneshot::channel();
        let rotation = move || async move {
            let outcome = rotor::rotation::rotate(&app, instance, &request, restore, &shutdown).await;
            let (state, report, error) = match outcome {
                Ok(report) => (RunState::Finished, serde_json::to_value(&report).ok(), None),
                Err(_) if shutdown.requested().is_some() => {
                    (RunState::Stopped, None, Some("stopped with the plugin; rotor/rotate resumes it".into()))
                }
                Err(error) => (RunState::Failed, None, Some(in_mount_words(&format!("{error:#}")))),
            };
            match &error {
                None => tracing::info!("rotation finished"),
                Some(error) => tracing::warn!("rotation stopped: {error}"),
            }
            let mut run = run.lock().unwrap_or_else(PoisonError::into_inner);
            *run = RunRecord { state, finished: Some(now()), report, error, started: run.started.take() };
        };
        // The rotation's future holds its component instance across awaits, which is not
        // `Sync`, so the future is not `Send` and cannot be a tokio task: a thread of its own
        // makes and drives it on this runtime (its I/O, timers and the workers it spawns), as
        // `rotor rotate`'s main thread does.
        let runtime = tokio::runtime::Handle::current();
        let spawned = std::thread::Builder::new().name("rotor-rotation".into()).spawn(move || {
            runtime.block_on(rotation());
            let _ = finished.send(());
        });
        if let Err(error) = spawned {
            let error = format!("starting the rotation's thread: {error}");
            self.record(RunState::Failed, None, Some(error.clone()));
            return Err(Failure::Internal(anyhow::anyhow!(error)));
        }
        *self.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
        tracing::info!(resuming = ?unfinished.as_ref().map(|r| r.id), "rotation started");
        Ok(json!({
            "started": true,
            "resuming_rotation": unfinished.map(|r| r.id),
            "status": "read rotor/status to follow it",
        }))
    }

    fn record(&self, state: RunState, report: Option<Value>, error: Option<String>) {
        let mut run = self.run.lock().unwrap_or_else(PoisonError::into_inner);
        run.state = state;
        run.finished = Some(now());
        run.report = report;
        run.error = error;
    }

    /// Whether a rotation started by this process is running.
    pub fn is_running(&self) -> bool {
        self.run.lock().unwrap_or_else(PoisonError::into_inner).state == RunState::Running
    }

    /// The last rotation this process ran, as JSON.
    pub fn last_run(&self) -> Value {
        let run = self.run.lock().unwrap_or_else(PoisonError::into_inner).clone();
        serde_json::to_value(run).unwrap_or(Value::Null)
    }

    /// Asks a running rotation to stop at the end of its batch, and waits for it a while: what
    /// OpenBao's cleanup (a reload, an unmount, a shutdown) needs before it stops the process.
    pub async fn stop(&self) {
        self.shutdown.trigger(Signal::Terminate);
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(task) = task
            && tokio::time::timeout(STOP_WAIT, task).await.is_err()
        {
            tracing::warn!(
                "the rotation did not stop within {STOP_WAIT:?}; the next rotor/rotate resumes it"
            );
        }
    }
}

/// OpenBao's plugin directory: where OpenBao started this binary from.
fn plugin_dir() -> Result<PathBuf, Failure> {
    let exe = std::env::current_exe().map_err(|e| anyhow::anyhow!("finding the plugin's own path: {e}"))?;
    exe.parent()
        .map(PathBuf::from)
        .ok_or_else(|| Failure::Internal(anyhow::anyhow!("the plugin binary has no folder")))
}

/// `file`, if its sha256 is `pinned`: a component whose digest is not pinned never runs.
async fn pinned_file(file: PathBuf, pinned: &str) -> Result<ComponentChoice, Failure> {
    let read = file.clone();
    let source = tokio::task::spawn_blocking(move || {
        let bytes = std::fs::read(&read).map_err(|e| {
            anyhow::anyhow!("cannot read component {} in OpenBao's plugin directory: {e}", read.display())
        })?;
        ComponentSource::from_bytes(bytes, read.display().to_string())
    })
    .await
    .map_err(|e| anyhow::anyhow!("reading the component: {e}"))?
    .map_err(refused)?;
    refuse_unpinned(&file.display().to_string(), &source.sha256, pinned)?;
    Ok(ComponentChoice::File(file))
}

/// Refuses component `origin` unless its digest is the one `rotor/config` pins.
fn refuse_unpinned(origin: &str, sha256: &str, pinned: &str) -> Result<(), Failure> {
    if sha256 == pinned {
        return Ok(());
    }
    Err(Failure::BadRequest(format!(
        "component {origin} has sha256 {sha256}, not the {pinned} pinned in rotor/config: refusing to run \
         it; check it, then write rotor/config component_sha256=<its digest> if it is the one to run"
    )))
}
