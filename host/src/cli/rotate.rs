//! `rotor rotate`: one rotation for the settings' scope (or tenant), with its schedule,
//! staging and `--compromised` steps; and a list of tenants, each rotated in turn.

use serde::Serialize;

use crate::app::App;
use crate::grants::Access;
use crate::metrics::{Observed, Recorder};
use crate::report::Outcome;
use crate::shutdown::Shutdown;
use crate::vault::VaultWrites;

use super::args::{GlobalArgs, RotateCommand};
use super::output::Shown;
use super::require_vault_writes;
use super::settings::open_app;

/// `rotor rotate` for the tenant (or the one scope) the settings name: what it did, and what
/// it shows, printed by the caller.
pub(super) async fn rotate(
    global: &GlobalArgs,
    command: &RotateCommand,
    metrics: &Recorder,
    shutdown: &Shutdown,
) -> anyhow::Result<(Outcome, Shown)> {
    let app = open_app(global, true, command.rotate.plan()).await?;
    let root = if command.new_root { Some(store_new_root(&app).await?) } else { None };
    let (outcome, mut shown) = rotate_with(&app, global, command, metrics, shutdown).await?;
    if let Some(root) = root {
        shown.human = format!("{root}\n{}", shown.human);
        if let Some(document) = shown.json.as_object_mut() {
            document.insert("new_root".into(), serde_json::Value::String(root));
        }
    }
    Ok((outcome, shown))
}

/// `--new-root`: stores the root's next version before anything else; what it says of it.
async fn store_new_root(app: &App) -> anyhow::Result<String> {
    let Some(root_path) = app.settings().derive_from.clone() else {
        anyhow::bail!(
            "--new-root: rotor.toml's [tenants] names no `derive-from` root KEK (tenants' KEKs are stored, \
             not derived); nothing was changed"
        );
    };
    let root = app.key_ring().new_root().await?;
    Ok(format!(
        "root KEK: stored v{} at {root_path} (fingerprint {}); rotations derive from it from now on",
        root.version,
        crate::keyring::fingerprint(&root.kek)
    ))
}

/// [`rotate`] once the settings are read.
async fn rotate_with(
    app: &App,
    global: &GlobalArgs,
    command: &RotateCommand,
    metrics: &Recorder,
    shutdown: &Shutdown,
) -> anyhow::Result<(Outcome, Shown)> {
    let RotateCommand { rotate: args, if_older_than, scheduled, compromised, stage, .. } = command;
    let if_older_than = match (if_older_than, *scheduled) {
        (Some(age), _) => Some((**age, "--if-older-than")),
        (None, true) => Some((
            app.settings().rotate_after.ok_or_else(|| {
                anyhow::anyhow!(
                    "--scheduled needs `rotate-after` under [schedule] in the settings file{}; \
                     nothing was changed",
                    app.settings()
                        .profile
                        .as_ref()
                        .map(|p| format!(" (or under [profile.{p}.schedule])"))
                        .unwrap_or_default()
                )
            })?,
            "rotate-after",
        )),
        (None, false) => None,
    };
    let unfinished = app.database().our_unfinished_rotation().await?;
    if let Some(rotation) = unfinished.as_ref().filter(|_| if_older_than.is_some()) {
        // The schedule is for starting rotations; one left unfinished is due now.
        tracing::info!(
            rotation = rotation.id,
            "rotation #{} is unfinished: resuming it whatever --if-older-than says",
            rotation.id
        );
    } else if let Some((min_age, source)) = if_older_than {
        let age = crate::rotation::kek_age(app).await?;
        if age < min_age {
            let skipped = serde_json::json!({
                "skipped": true,
                "kek_age_seconds": age.as_secs(),
                "if_older_than_seconds": min_age.as_secs(),
            });
            let human = format!(
                "not rotating: the current KEK is {} old, younger than {source} {}",
                crate::durations::human(age),
                crate::durations::human(min_age)
            );
            metrics.observe(app, Observed::default()).await;
            return Ok((Outcome::Success, Shown::of(&skipped, human)));
        }
    }
    if *stage {
        app.require_policies(VaultWrites::Stage).await?;
        let staged = crate::staging::stage(app).await?;
        metrics.observe(app, Observed::default()).await;
        return Ok((Outcome::Success, Shown::of(&staged, staged.human())));
    }
    if unfinished.is_none() && !args.resume && !args.dry_run {
        crate::staging::refuse_while_staged(app, "rotate").await?;
    }
    let access = if args.dry_run { Access::ReadOnly } else { Access::Rotate };
    let writes = if compromised.is_some() { VaultWrites::Prune } else { VaultWrites::Rotation };
    require_vault_writes(app, args, writes).await?;
    let instance = app.instance(access, global.reporter("rotate")).await?;
    let mut request = args.request();
    // A leaked KEK may have exposed the data keys it wrapped: every row gets a new one.
    request.reencrypt |= compromised.is_some();
    let report = crate::rotation::rotate(app, instance, &request, None, shutdown).await?;
    metrics.observe(app, report.observed()).await;
    let Some(leaked) = *compromised else {
        return Ok((report.outcome(), Shown::of(&report, report.human())));
    };
    retire_compromised(app, report, leaked).await
}

/// `rotor rotate --tenant a,b` or `--tenant all`: each tenant's rotation in turn, as `rotor
/// --tenant T rotate` runs it. One tenant's failure does not keep the others from rotating;
/// all of them show in one document, `{"tenants": {NAME: report or {"error": …}}}` (and
/// `"new_root"` with --new-root, which stores one root version for all first). After a
/// signal, the tenants not yet begun are not rotated.
pub(super) async fn rotate_tenants(
    global: &GlobalArgs,
    command: &RotateCommand,
    tenants: Vec<String>,
    shutdown: &Shutdown,
) -> anyhow::Result<Outcome> {
    if global.metrics_file.is_some() {
        anyhow::bail!(
            "--metrics-file with several tenants: a page holds one tenant's figures, so run `rotor --tenant \
             NAME rotate --metrics-file PATH` once per tenant, each with its own file; nothing was changed"
        );
    }
    let no_metrics = Recorder::new(None, Vec::new());
    let mut documents = serde_json::Map::new();
    let mut texts = Vec::new();
    // One new root for all: each tenant's rotation then derives from it.
    let mut command = command.clone();
    let mut new_root = None;
    if std::mem::take(&mut command.new_root) {
        let mut first = global.clone();
        first.tenant = tenants.first().cloned();
        let app = open_app(&first, true, command.rotate.plan()).await?;
        let root = store_new_root(&app).await?;
        texts.push(root.clone());
        new_root = Some(root);
    }
    let command = &command;
    let mut worst = Outcome::Success;
    for tenant in tenants {
        if shutdown.requested().is_some() {
            texts.push(format!("tenant {tenant}: not rotated (stopped by a signal)"));
            documents.insert(tenant, serde_json::json!({ "error": "not rotated: stopped by a signal" }));
            worst = Outcome::Problems;
            continue;
        }
        let mut one = global.clone();
        one.tenant = Some(tenant.clone());
        match rotate(&one, command, &no_metrics, shutdown).await {
            Ok((outcome, shown)) => {
                if worst == Outcome::Success {
                    worst = outcome;
                }
                texts.push(format!("tenant {tenant}:\n{}", shown.human));
                documents.insert(tenant, shown.json);
            }
            Err(error) => {
                worst = Outcome::Problems;
                texts.push(format!("tenant {tenant}: FAILED: {error:#}"));
                documents.insert(tenant, serde_json::json!({ "error": format!("{error:#}") }));
            }
        }
    }
    let mut document = serde_json::json!({ "tenants": documents });
    if let Some(root) = new_root {
        document["new_root"] = serde_json::Value::String(root);
    }
    Shown::of(&document, texts.join("\n\n")).print(global.json);
    Ok(worst)
}

/// The end of `rotor rotate --compromised VN`: once the rotation left no row behind, destroys
/// vN with a receipt; prints the rotation and what became of vN together.
async fn retire_compromised(
    app: &App,
    rotation: crate::report::RotateReport,
    leaked: u32,
) -> anyhow::Result<(Outcome, Shown)> {
    #[derive(Serialize)]
    struct Retired<'a> {
        rotation: &'a crate::report::RotateReport,
        compromised_version: u32,
        /// The destruction of vN, when it was destroyed.
        destroyed: Option<crate::prune::Pruned>,
        /// Why vN was kept, when it was.
        kept_because: Option<String>,
    }
    let (destroyed, kept_because) = if rotation.failed > 0 {
        let why = format!(
            "{} row(s) could not be moved (listed above) and may still name v{leaked}: fix them, run \
             `rotor rotate --reencrypt`, then `rotor destroy v{leaked}`",
            rotation.failed
        );
        (None, Some(why))
    } else {
        match crate::prune::destroy(app, leaked, false).await {
            Ok(destroyed) => (Some(destroyed), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        }
    };
    let retired = Retired { rotation: &rotation, compromised_version: leaked, destroyed, kept_because };
    let after = match (&retired.destroyed, &retired.kept_because) {
        (Some(destroyed), _) => destroyed.human(),
        (None, why) => {
            format!("compromised KEK v{leaked} was NOT destroyed: {}", why.as_deref().unwrap_or(""))
        }
    };
    let shown = Shown::of(&retired, format!("{}\n{after}", rotation.human()));
    let outcome = match (&retired.destroyed, rotation.outcome()) {
        (Some(destroyed), _) if destroyed.receipt_not_stored.is_some() => Outcome::Problems,
        (Some(_), outcome) => outcome,
        (None, Outcome::WalletsFailed) => Outcome::WalletsFailed,
        (None, _) => Outcome::Problems,
    };
    Ok((outcome, shown))
}
