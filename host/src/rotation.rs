//! A rotation spread over workers.
//!
//! One instance of the component sets the rotation up (`start-rotation`: journal, new KEK in
//! Vault, key ranges planned). Then `workers` instances, each in its own store but all made
//! from the one compiled and linked component, run `move-wallets` at once: each claims key
//! ranges (see [`crate::coordination`]) and moves them batch by batch, the next batch read while the
//! current one is resealed and written. Other `rotor rotate` processes, on this machine or
//! others, join the same rotation through the same ranges. When every range is done, one
//! process sweeps the table under the rotation lease and closes the rotation. A rotation of
//! several tables (`[[target]]`) walks and sweeps each in turn under the one new KEK version.
//!
//! Over 500 lines on purpose: set-up, the walk per target, the sweep and the dry run are the
//! steps of one rotation and share its types; the walk's mechanics live in `coordination`.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::task::JoinSet;

use crate::answer::answer;
use crate::app::App;
use crate::bindings::operations::{MoveReport, RotateOptions, RotateReport, RotationPlan};
use crate::bindings::types::OutputFormat;
use crate::component::Instance;
use crate::coordination::{Batches, Lease, SweepParts, Walk, WalkSpec, WorkerBatches};
use crate::grants::Access;
use crate::ledger::Ledger;
use crate::progress::Reporter;
use crate::report::{self, Failures, peak_rss_bytes};
use crate::shutdown::{Interrupted, Shutdown, Signal};
use crate::store::{Database, OddRows, RotationRecord, RotationStatus, StoreError};

/// What a `rotor rotate` (or `rollback`) asks for, resolved from its flags.
#[derive(Clone, Debug)]
pub struct RotateRequest {
    /// Open and reseal everything, store nothing.
    pub dry_run: bool,
    /// Fresh data keys too.
    pub reencrypt: bool,
    /// Only finish the unfinished rotation.
    pub resume: bool,
    /// Change nothing unless every wallet opens.
    pub strict: bool,
    /// What the rotation writes.
    pub output_format: OutputFormat,
}

/// `rotor rotate` and `rotor rollback`: moves wallets to a fresh KEK, or with `restore` to an
/// earlier one made current again. `instance` sets the rotation up and is the first of the
/// workers; a dry run is all its own. A signal on `shutdown` stops the walk cleanly (see
/// [`crate::shutdown`]).
pub async fn rotate(
    app: &App,
    mut instance: Instance,
    request: &RotateRequest,
    restore: Option<u32>,
    shutdown: &Shutdown,
) -> anyhow::Result<report::RotateReport> {
    let options = RotateOptions {
        batch_size: app.plan().batch_size.get(),
        dry_run: request.dry_run,
        reencrypt: request.reencrypt,
        resume: request.resume,
        strict: request.strict,
        output_format: request.output_format,
        restore,
    };
    let started = std::time::Instant::now();
    let reporter = instance.state().reporter().clone();
    let report = if request.dry_run {
        dry_run(app, &mut instance, options).await
    } else {
        run_rotation(app, instance, options, shutdown).await
    };
    reporter.finish();
    let report: RotateReport = report?;
    if !request.dry_run {
        Ledger::new(app.kv(), &app.settings().key_path).extend(app.database()).await;
    }
    let elapsed = started.elapsed();
    let mut failed = Failures::default();
    report::add_failures(&mut failed, report.failed, report.failed_count);
    let (failed, failed_ids, failures, unlisted) = report::failure_parts(failed);
    // What the rotation really did, as the journal keeps it: a resumed rotation keeps the
    // --reencrypt it began with, whatever this command said.
    let recorded = match report.rotation_id {
        0 => None,
        id => app.database().rotations().await?.into_iter().find(|r| r.id == id as i64),
    };
    Ok(report::RotateReport {
        rotation_id: report.rotation_id,
        from_version: report.from_version,
        to_version: report.to_version,
        total: report.total,
        rotated: report.rotated,
        unchanged: report.unchanged,
        failed,
        failed_ids,
        failures,
        unlisted,
        dry_run: report.dry_run,
        reencrypt: recorded.as_ref().map_or(request.reencrypt, |r| r.reencrypt),
        restored_version: recorded.as_ref().map_or(restore, |r| r.restores.map(|v| v as u32)),
        duration_ms: elapsed.as_millis() as u64,
        wallets_per_second: report.rotated as f64 / elapsed.as_secs_f64().max(1e-9),
        component_sha256: app.component().sha256.clone(),
        peak_rss_bytes: peak_rss_bytes(),
    })
}

/// A dry run: the component opens and reseals every wallet of each target in turn, storing
/// nothing. Rows it is not handed (see [`OddRows`]) are listed as it would leave them; with
/// several targets, each wallet is named `table/id`.
async fn dry_run(app: &App, instance: &mut Instance, options: RotateOptions) -> anyhow::Result<RotateReport> {
    let targets = app.database().targets();
    let qualify = targets.len() > 1;
    let mut all: Option<RotateReport> = None;
    let mut failed = Failures::default();
    for target in targets {
        let table = target.table().table.clone();
        let odd = OddRows::default();
        instance.state_mut().wallets_mut().set_odd_rows(odd.clone());
        let options = match target.table().format {
            Some(format) => RotateOptions { output_format: output_format(format), ..options },
            None => options,
        };
        instance.state_mut().wallets_mut().use_target(target);
        let mut report = answer(instance.rotate(&app.key_location(), options).await)?;
        let mut target_failed = Failures::default();
        report::add_failures(&mut target_failed, std::mem::take(&mut report.failed), report.failed_count);
        report::add_odd_rows(&mut target_failed, &odd);
        if qualify {
            report::name_by_table(&table, target_failed.items_mut());
        }
        let (listed, count) = target_failed.into_parts();
        report::add_failures(&mut failed, listed, count);
        all = Some(match all {
            None => report,
            Some(mut all) => {
                all.total += report.total;
                all.rotated += report.rotated;
                all.unchanged += report.unchanged;
                all
            }
        });
    }
    let mut all = all.ok_or_else(|| anyhow!("no table to rotate was given"))?;
    (all.failed, all.failed_count) = failed.into_parts();
    Ok(all)
}

/// Runs a rotation (or joins the unfinished one) with `first` doing the set-up and its
/// reporter showing the walk's progress, and the plan's workers walking; returns what this
/// process did: its workers' moves, and the sweep if it was the one to close the rotation. A
/// signal on `shutdown` stops the walk, giving its ranges and the lease back.
async fn run_rotation(
    app: &App,
    mut first: Instance,
    options: RotateOptions,
    shutdown: &Shutdown,
) -> anyhow::Result<RotateReport> {
    let at = app.key_location();
    let started = std::time::Instant::now();
    let run = *app.plan();
    if options.strict {
        refuse_odd_rows(app.database(), options.batch_size).await?;
    }
    // Set-up takes milliseconds and leaves a consistent state at every step, so a signal
    // meanwhile is answered once it is done.
    let set_up = first.start_rotation(&at, options).await;
    // Whatever set-up did, other rotors may join or take over at once.
    release_lease(first.state().lease()).await;
    let plan = answer(set_up)?;
    if let Some(signal) = shutdown.requested() {
        return Err(stopped(signal, &plan).into());
    }
    let database = app.database().clone();
    let recorded = match check_plan(&database, &plan).await? {
        Planned::Running(recorded) => recorded,
        // This rotor waited to join a rotation that other rotors finished meanwhile.
        Planned::Finished => {
            tracing::info!(
                rotation = plan.rotation_id,
                "the rotation was finished by another rotor meanwhile"
            );
            let total = database.count_targets().await?;
            return Ok(RotateReport {
                rotation_id: plan.rotation_id,
                from_version: plan.from_version,
                to_version: plan.to_version,
                total,
                rotated: 0,
                unchanged: total,
                failed: Vec::new(),
                failed_count: 0,
                dry_run: false,
            });
        }
    };

    let identity = first.state().lease().identity().clone();
    let reporter = first.state().reporter().clone();
    let mut workers = vec![first];
    for _ in 1..run.workers.get() {
        workers.push(app.instance(Access::Rotate, Reporter::silent()).await?);
    }
    // Each target is walked by all the workers in turn; its odd rows are collected apart, so
    // that every wallet left behind is named with its table.
    let mut walks = Vec::new();
    let mut done_before = 0;
    for (index, target) in database.targets().into_iter().enumerate() {
        let target_plan = plan_for(&plan, target.table());
        let walk = Walk::new(WalkSpec {
            database: target,
            rotation: plan.rotation_id as i64,
            target: index,
            skip_prefix: skip_prefix(&target_plan),
            batch_size: run.batch_size.get(),
            identity: identity.clone(),
            claim_ttl: run.lease_ttl,
            reporter: reporter.clone(),
            // Counted when the rotation began: counting again costs a scan of every table.
            total: recorded.total.max(0) as u64,
            done_before,
        });
        // Rows left untouched (odd, or over the value limit), by any worker: one list. The
        // first target's starts with what set-up met.
        let odd = match index {
            0 => workers[0].state().wallets().odd_rows().clone(),
            _ => OddRows::default(),
        };
        for worker in &mut workers {
            worker.state_mut().wallets_mut().set_odd_rows(odd.clone());
        }
        tracing::debug!(elapsed = ?started.elapsed(), table = %walk.database.table().table, "walking");
        match move_in_parallel(
            workers,
            &walk,
            || WorkerBatches::ranges(walk.clone()),
            &at,
            &target_plan,
            shutdown,
        )
        .await?
        {
            Walked::Done(back, moved) => {
                workers = back;
                walks.push(TargetWalk { walk: walk.clone(), odd, moved });
            }
            Walked::Stopped(signal) => {
                // The workers are gone, their batches in flight rolled back: their key ranges
                // go back to the pool with the cursor of the last committed batch.
                walk.give_back().await;
                return Err(stopped(signal, &plan).into());
            }
        }
        done_before += walk.handed_out();
    }
    reporter.finish();
    tracing::debug!(elapsed = ?started.elapsed(), handed_out = done_before, "walk done; sweeping");

    let lease = Lease::new(database.clone(), identity, run.lease_ttl);
    let closed = match sweep_and_close(app, workers, &lease, &mut walks, &plan, shutdown).await? {
        Swept::Closed(closed) => closed,
        Swept::Stopped(signal) => {
            for target in &walks {
                target.walk.give_back().await;
            }
            return Err(stopped(signal, &plan).into());
        }
    };
    tracing::debug!(elapsed = ?started.elapsed(), closed, "rotation closed");
    let qualify = walks.len() > 1;
    let mut moved = Moved::default();
    let mut nameless = 0;
    for target in walks {
        let table = target.walk.database.table().table.clone();
        // Odd rows never reach the component: none of them is among its failures.
        let mut failed = target.moved.failed;
        report::add_odd_rows(&mut failed, &target.odd);
        // An entry for rows without a usable id stands for all of them.
        nameless += target.odd.rows() - target.odd.entries().len() as u64;
        if qualify {
            report::name_by_table(&table, failed.items_mut());
        }
        moved.rotated += target.moved.rotated;
        let (listed, count) = failed.into_parts();
        report::add_failures(&mut moved.failed, listed, count);
    }
    let total = database.count_targets().await?;
    let moved_or_failed = moved.rotated.saturating_add(moved.failed.count()).saturating_add(nameless);
    let (failed, failed_count) = moved.failed.into_parts();
    Ok(RotateReport {
        rotation_id: plan.rotation_id,
        from_version: plan.from_version,
        to_version: plan.to_version,
        total,
        rotated: moved.rotated,
        unchanged: total.saturating_sub(moved_or_failed),
        failed,
        failed_count,
        dry_run: false,
    })
}

/// One target's walk in this process, and what came of it.
struct TargetWalk {
    walk: std::sync::Arc<Walk>,
    /// Its rows left untouched, the sweep's included.
    odd: OddRows,
    /// What this process's workers (and the sweep, if this process closed the rotation) moved;
    /// the wallets they could not move are the sweep's, if this process swept.
    moved: Moved,
}

/// What a rotation stopped by a signal says.
fn stopped(signal: Signal, plan: &RotationPlan) -> Interrupted {
    Interrupted {
        signal,
        what: format!(
            "rotation #{} (KEK v{} -> v{}) stopped before it finished: the batches in flight were \
             rolled back and its key ranges released; `rotor rotate` resumes it",
            plan.rotation_id, plan.from_version, plan.to_version
        ),
    }
}

/// `--strict`: rows the component is never handed (no text ciphertext, no usable id) refuse
/// the rotation too, before anything is stored.
async fn refuse_odd_rows(database: &Database, batch_size: u32) -> anyhow::Result<()> {
    let targets = database.targets();
    let mut listed = Vec::new();
    for target in &targets {
        let odd = crate::coordination::find_odd_rows(target, batch_size).await?.entries();
        let table = &target.table().table;
        listed.extend(odd.iter().map(|row| match targets.len() {
            1 => format!("{}: {}", row.id, row.reason),
            _ => format!("{table}/{}: {}", row.id, row.reason),
        }));
    }
    if listed.is_empty() {
        return Ok(());
    }
    bail!(
        "--strict: {} row(s) hold no wallet rotor can move, so nothing was changed:\n  {}",
        listed.len(),
        listed.join("\n  ")
    )
}

/// What the journal says of the rotation the component set up.
enum Planned {
    Running(Box<RotationRecord>),
    /// Finished by other rotors while this one waited to join it.
    Finished,
}

/// The component names the rotation it set up; the journal must agree before anything moves.
async fn check_plan(database: &Database, plan: &RotationPlan) -> anyhow::Result<Planned> {
    let id = plan.rotation_id as i64;
    let recorded = database.rotations().await?.into_iter().find(|r| r.id == id);
    match recorded {
        Some(r) if r.to_version == i64::from(plan.to_version) && r.status == RotationStatus::Running => {
            Ok(Planned::Running(Box::new(r)))
        }
        Some(r) if r.to_version == i64::from(plan.to_version) && r.status == RotationStatus::Finished => {
            Ok(Planned::Finished)
        }
        _ => bail!(
            "the component set up rotation #{} to KEK v{}, which rotor's journal does not hold as \
             running; nothing was moved",
            plan.rotation_id,
            plan.to_version
        ),
    }
}

/// `plan` as `table` is written: in the layout its `[[target]]` names, if it names one.
fn plan_for(plan: &RotationPlan, table: &crate::store::WalletTable) -> RotationPlan {
    match table.format {
        Some(format) => RotationPlan { output_format: output_format(format), ..*plan },
        None => *plan,
    }
}

fn output_format(format: crate::store::TargetFormat) -> OutputFormat {
    match format {
        crate::store::TargetFormat::Envelope => OutputFormat::Envelope,
        crate::store::TargetFormat::Legacy => OutputFormat::Legacy,
    }
}

/// What the database may leave out: wallets whose prefix names the target already. Legacy
/// output names no version, so every wallet is read and trial decryption tells.
fn skip_prefix(plan: &RotationPlan) -> Option<String> {
    match plan.output_format {
        OutputFormat::Envelope => Some(format!("{}{}:", rotor_codec::PREFIX, plan.to_version)),
        OutputFormat::Legacy => None,
    }
}

/// What this process's workers moved, and the wallets they could not move.
#[derive(Default)]
struct Moved {
    rotated: u64,
    failed: Failures,
}

impl Moved {
    fn add(&mut self, report: MoveReport) {
        self.rotated += report.rotated;
        report::add_failures(&mut self.failed, report.failed, report.failed_count);
    }
}

/// How the workers' walk ended.
enum Walked {
    /// Every range is done: the workers, in the order they were given, and what they moved
    /// together.
    Done(Vec<Instance>, Moved),
    /// A signal stopped it; every worker has stopped.
    Stopped(Signal),
}

/// Runs `move-wallets` in every worker at once, each over the batches `walk` hands it (its
/// ranges, or the sweep's parts, as `batches` makes them). If one worker fails, or a signal
/// arrives, the others are stopped: their batches in flight roll back, and no write of theirs
/// lands after this returns.
async fn move_in_parallel(
    workers: Vec<Instance>,
    walk: &Walk,
    batches: impl Fn() -> WorkerBatches,
    at: &crate::bindings::operations::KeyLocation,
    plan: &RotationPlan,
    shutdown: &Shutdown,
) -> anyhow::Result<Walked> {
    let count = workers.len();
    let mut running = JoinSet::new();
    for (index, mut worker) in workers.into_iter().enumerate() {
        worker.state_mut().wallets_mut().set_batches(Batches::Walk(Box::new(batches())));
        let (at, plan) = (at.clone(), *plan);
        running.spawn(async move {
            let mut moved = worker.move_wallets(&at, plan).await;
            // A worker is done once its last write has landed, whether or not its component
            // collected it.
            if let Err(e) = worker.state_mut().wallets_mut().settle_writes().await
                && matches!(moved, Ok(Ok(_)))
            {
                moved = Err(anyhow::Error::new(e).context("the worker's last batch was not written"));
            }
            (index, worker, moved)
        });
    }
    let mut total = Moved::default();
    let mut back: Vec<Option<Instance>> = (0..count).map(|_| None).collect();
    loop {
        let joined = tokio::select! {
            joined = running.join_next() => match joined {
                Some(joined) => joined,
                None => break,
            },
            signal = shutdown.wait() => {
                stop_all(running, walk).await;
                return Ok(Walked::Stopped(signal));
            }
        };
        let moved = match joined {
            Ok((index, worker, moved)) => answer(moved)
                .with_context(|| format!("rotation worker {index} failed"))
                .map(|m| (index, worker, m)),
            Err(e) => Err(anyhow::Error::new(e).context("a rotation worker panicked")),
        };
        match moved {
            Ok((index, worker, moved)) => {
                total.add(moved);
                back[index] = Some(worker);
            }
            Err(e) => {
                stop_all(running, walk).await;
                return Err(e);
            }
        }
    }
    let workers: Option<Vec<Instance>> = back.into_iter().collect();
    Ok(Walked::Done(workers.ok_or_else(|| anyhow!("a rotation worker did not report"))?, total))
}

/// Stops every worker still `running`, then waits for every write they left running: none
/// commits after this returns.
async fn stop_all<T: 'static>(mut running: JoinSet<T>, walk: &Walk) {
    running.abort_all();
    while running.join_next().await.is_some() {}
    walk.writes_settled().await;
}

/// How the final sweep ended.
enum Swept {
    /// The rotation is closed; `false` if another process closed it first.
    Closed(bool),
    /// A signal stopped it: the sweep's batches in flight were rolled back.
    Stopped(Signal),
}

/// Once every range is done: takes the rotation lease (waiting while another process holds
/// it), sweeps each target for wallets still on an old KEK with as many of `workers` as its
/// database scans best with (the target's key ranges shared out among them), adding what they
/// move and meet to the target's own, and closes the rotation.
async fn sweep_and_close(
    app: &App,
    mut workers: Vec<Instance>,
    lease: &Lease,
    walks: &mut [TargetWalk],
    plan: &RotationPlan,
    shutdown: &Shutdown,
) -> anyhow::Result<Swept> {
    let database = app.database();
    let id = plan.rotation_id as i64;
    let still_running =
        || async { Ok::<_, StoreError>(database.unfinished_rotation().await?.is_some_and(|r| r.id == id)) };
    loop {
        if !still_running().await? {
            return Ok(Swept::Closed(false));
        }
        match lease.acquire().await {
            Ok(()) => break,
            // Another process is sweeping, or setting up the next rotation already.
            Err(StoreError::LeaseHeld { .. }) => tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                signal = shutdown.wait() => return Ok(Swept::Stopped(signal)),
            },
            Err(e) => return Err(e.into()),
        }
    }
    let swept = async {
        if !still_running().await? {
            return Ok(Swept::Closed(false));
        }
        let mut left_behind: i64 = 0;
        for target in walks.iter_mut() {
            let table = target.walk.database.table().table.clone();
            // The sweep meets every row still left behind, odd ones included: its own list is
            // the journal's count of wallets the rotation leaves on their old KEK.
            let swept_odd = OddRows::default();
            for worker in &mut workers {
                worker.state_mut().wallets_mut().set_odd_rows(swept_odd.clone());
            }
            let target_plan = plan_for(plan, target.walk.database.table());
            let sweepers = target.walk.database.sweepers(workers.len());
            let parts = SweepParts::of(&target.walk, sweepers).await?;
            let resting = workers.split_off(sweepers);
            let batches = || WorkerBatches::sweep(target.walk.clone(), parts.clone());
            let swept =
                move_in_parallel(workers, &target.walk, batches, &app.key_location(), &target_plan, shutdown)
                    .await
                    .with_context(|| format!("sweeping table `{table}` for wallets still on an old KEK"))?;
            let moved = match swept {
                Walked::Done(back, moved) => {
                    workers = back;
                    workers.extend(resting);
                    moved
                }
                Walked::Stopped(signal) => return Ok(Swept::Stopped(signal)),
            };
            if moved.failed.count() > 0 {
                tracing::warn!(
                    %table,
                    failed = moved.failed.count(),
                    "wallets could not be moved and were left untouched on their old KEK"
                );
            }
            let left = moved.failed.count().saturating_add(swept_odd.rows());
            left_behind = left_behind.saturating_add(i64::try_from(left).unwrap_or(i64::MAX));
            target.odd.absorb(&swept_odd);
            target.moved.rotated += moved.rotated;
            // The sweep met every wallet still off the target, those the walk failed included:
            // what it failed is what stays behind. A wallet the walk failed and an application
            // rewrote since, or the sweep moved, is not.
            target.moved.failed = moved.failed;
            lease.renew().await?;
        }
        database.finish_rotation(id, left_behind).await?;
        anyhow::Ok(Swept::Closed(true))
    }
    .await;
    release_lease(lease).await;
    swept
}

async fn release_lease(lease: &Lease) {
    if let Err(e) = lease.release().await {
        tracing::warn!("could not release the rotation lease (it will expire): {e}");
    }
}

/// How long ago the current KEK was written to Vault (its KV version's creation time).
pub async fn kek_age(app: &App) -> anyhow::Result<std::time::Duration> {
    let key_path = &app.settings().key_path;
    let metadata = app.kv().metadata(key_path).await?.ok_or_else(|| {
        anyhow!("no KEK at {key_path} in Vault: store the first one with `rotor migrate-kek --from-env VAR`")
    })?;
    let created = metadata
        .versions
        .iter()
        .find(|v| v.version == metadata.current_version)
        .map(|v| v.created_time.as_str())
        .ok_or_else(|| anyhow!("Vault's metadata of {key_path} lists no current version"))?;
    let created = humantime::parse_rfc3339_weak(created)
        .with_context(|| format!("Vault's creation time of {key_path} is not RFC 3339: {created}"))?;
    Ok(std::time::SystemTime::now().duration_since(created).unwrap_or_default())
}

/// The KEK version the last rotation moved away from: what `rollback` goes back to.
pub async fn previous_kek(app: &App) -> anyhow::Result<u32> {
    let current = app.kv().metadata(&app.settings().key_path).await?.map(|m| m.current_version);
    let last = app.database().rotations().await?.into_iter().find(|r| r.status == RotationStatus::Finished);
    match last {
        Some(r) if Some(r.to_version as u64) == current => Ok(r.from_version as u32),
        _ => Err(anyhow!(
            "the current KEK was not made by a rotor rotation recorded here, so there is no previous one \
             to go back to: name the version with --to"
        )),
    }
}
