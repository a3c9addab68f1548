//! `rotor/rotate`, `rotor/validate`, `rotor/status` and `rotor/history`: the `rotor` CLI's
//! commands of the same names, run inside the mount on its settings (`rotor/config`) and its
//! key ring.

use rotor::answer::answer;
use rotor::grants::Access;
use rotor::progress::Reporter;
use serde_json::json;

use super::{Mount, only};
use crate::request::{Failure, Operation, Outcome, Request};
use crate::runner::{host_failure, refused};

/// `write rotor/rotate [reencrypt=true]`: starts a rotation, or resumes the unfinished one, and
/// returns at once; `rotor/status` follows it.
pub(super) async fn rotate(mount: &Mount, request: &Request) -> Outcome {
    only(request, &[Operation::Create, Operation::Update], "write")?;
    request.only_fields(&["reencrypt"])?;
    Ok(Some(mount.runner.rotate(request.flag("reencrypt")?, None).await?))
}

/// `write rotor/rollback [version=N]`: as `rotor/rotate`, onto a new KEK version that holds
/// the key of version N again (default: the version before the last rotation's).
pub(super) async fn rollback(mount: &Mount, request: &Request) -> Outcome {
    only(request, &[Operation::Create, Operation::Update], "write")?;
    request.only_fields(&["version"])?;
    let to = match request.number("version")? {
        Some(version) => version,
        None => {
            let app = mount.runner.app().await?;
            rotor::rotation::previous_kek(&app).await.map_err(refused)?
        }
    };
    let mut started = mount.runner.rotate(false, Some(to)).await?;
    started["restores_version"] = json!(to);
    Ok(Some(started))
}

/// `write rotor/prune keep=N [dry_run=true]`: destroys the KEK versions older than the newest N
/// that no row uses, after the host's checks, and keeps a receipt in the mount's storage; with
/// `dry_run`, says what it would destroy and destroys nothing.
pub(super) async fn prune(mount: &Mount, request: &Request) -> Outcome {
    only(request, &[Operation::Create, Operation::Update], "write")?;
    request.only_fields(&["keep", "dry_run"])?;
    let keep = request.number("keep")?.ok_or_else(|| {
        Failure::BadRequest("field \"keep\" is required: how many of the newest versions to keep".into())
    })?;
    let dry_run = request.flag("dry_run")?;
    if mount.runner.is_running() {
        return Err(Failure::BadRequest(
            "a rotation is running: prune once rotor/status shows it done".into(),
        ));
    }
    let app = mount.runner.app().await?;
    let pruned = async {
        let instance = app.instance(Access::Prune, Reporter::silent()).await?;
        rotor::prune::prune(&app, instance, keep, dry_run).await
    };
    let pruned = pruned.await.map_err(refused)?;
    Ok(Some(serde_json::to_value(&pruned).map_err(anyhow::Error::from)?))
}

/// `write rotor/validate`: opens every wallet and reports them by KEK version, naming those that
/// do not open. Changes nothing.
pub(super) async fn validate(mount: &Mount, request: &Request) -> Outcome {
    only(request, &[Operation::Create, Operation::Update], "write")?;
    request.only_fields(&[])?;
    let app = mount.runner.app().await?;
    let checked = async {
        let mut instance = app.instance(Access::ReadOnly, Reporter::silent()).await?;
        rotor::validate::validate(&app, &mut instance).await
    };
    let report = checked.await.map_err(host_failure)?;
    Ok(Some(serde_json::to_value(&report).map_err(anyhow::Error::from)?))
}

/// `read rotor/status`: the wallets by KEK version, the unfinished rotation if any, and what
/// the last rotation run by this plugin process came to. While that rotation runs, the counts
/// per KEK version (a scan of every row, which competes with the rotation when status is
/// polled) are left out: the walk's key ranges show its progress.
pub(super) async fn status(mount: &Mount, request: &Request) -> Outcome {
    only(request, &[Operation::Read], "read")?;
    let app = mount.runner.app().await?;
    let last_run = mount.runner.last_run();
    if last_run["state"] == "running" {
        let database = app.database();
        let progress = async {
            let unfinished = database.unfinished_rotation().await?;
            let walk = match &unfinished {
                Some(rotation) => Some(database.range_progress(rotation.id).await?),
                None => None,
            };
            anyhow::Ok((unfinished, walk))
        };
        let (unfinished, walk) = progress.await.map_err(host_failure)?;
        return Ok(Some(json!({
            "last_run": last_run,
            "unfinished": unfinished,
            "walk": walk,
            "key_versions": null,
            "note": "wallets per KEK version are counted once the rotation is done",
        })));
    }
    let status = rotor::status::status(&app).await.map_err(host_failure)?;
    let mut shown = serde_json::to_value(&status).map_err(anyhow::Error::from)?;
    shown["last_run"] = last_run;
    Ok(Some(shown))
}

/// `read rotor/history`: every rotation, as the journal keeps it.
pub(super) async fn history(mount: &Mount, request: &Request) -> Outcome {
    only(request, &[Operation::Read], "read")?;
    let app = mount.runner.app().await?;
    let lines = async {
        let mut instance = app.instance(Access::ReadOnly, Reporter::silent()).await?;
        let entries = answer(instance.history(&app.key_location()).await)?;
        rotor::history::history_lines(&app, entries).await
    };
    let lines = lines.await.map_err(host_failure)?;
    Ok(Some(json!({ "rotations": lines })))
}
