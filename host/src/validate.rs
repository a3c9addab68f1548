//! `validate` spread over workers: instances of the component, made from the one compiled
//! component, each opening the batches of one shared read-only pass over the table. Opening a
//! wallet is AES inside wasm, so the rate grows with the cores; nothing is written anywhere.
//! Rows that hold no wallet to open (see [`crate::store::OddRows`]) are listed as invalid.

use std::collections::BTreeMap;

use std::time::Instant;

use anyhow::Context;
use tokio::task::JoinSet;

use crate::answer::answer;
use crate::app::App;
use crate::bindings::operations::ValidateReport;
use crate::bindings::types::VersionCount;
use crate::component::Instance;
use crate::coordination::{Batches, SharedScan};
use crate::grants::Access;
use crate::plan::RunPlan;
use crate::progress::Reporter;
use crate::report::{self, Failures, peak_rss_bytes, version_label};
use crate::store::OddRows;

/// `rotor validate`: opens every wallet of every target, with the plan's workers (`instance`
/// among them), and reports them by KEK version, listing those that do not open.
pub async fn validate(app: &App, instance: &mut Instance) -> anyhow::Result<report::ValidateReport> {
    let started = Instant::now();
    let report = open_every_target(app, instance).await;
    instance.state().reporter().finish();
    let (mut report, tables) = report?;
    let (invalid, invalid_ids, failures, unlisted) = report::failure_parts(invalid_of(&mut report));
    Ok(report::ValidateReport {
        key_versions: report.key_versions.iter().map(|c| (version_label(c.version), c.count)).collect(),
        total: report.total,
        valid: report.valid,
        invalid,
        invalid_ids,
        failures,
        unlisted,
        tables,
        duration_ms: started.elapsed().as_millis() as u64,
        peak_rss_bytes: peak_rss_bytes(),
    })
}

/// Opens the wallets of each target in turn; one report for all, and for several targets
/// each one's figures, with the ids of wallets that do not open named `table/id`.
async fn open_every_target(
    app: &App,
    first: &mut Instance,
) -> anyhow::Result<(ValidateReport, Vec<report::TableCheck>)> {
    let targets = app.database().targets();
    if let [_] = targets.as_slice() {
        return Ok((open_in_parallel(app, first, None).await?, Vec::new()));
    }
    let (mut reports, mut tables) = (Vec::new(), Vec::new());
    for target in targets {
        let table = target.table().table.clone();
        first.state_mut().wallets_mut().set_odd_rows(OddRows::default());
        let mut report = open_in_parallel(app, first, Some(target)).await?;
        report::name_by_table(&table, &mut report.invalid);
        tables.push(report::TableCheck {
            table,
            total: report.total,
            valid: report.valid,
            invalid: report.invalid_count,
        });
        reports.push(report);
    }
    Ok((merge(reports), tables))
}

/// Opens every wallet of the table with the plan's workers, `first` among them; one report for
/// all. `target` is the table of a rotation of several, passed over in a shared scan; `None`
/// is the instance's own table.
async fn open_in_parallel(
    app: &App,
    first: &mut Instance,
    target: Option<crate::store::Database>,
) -> anyhow::Result<ValidateReport> {
    let at = app.key_location();
    let odd = first.state().wallets().odd_rows().clone();
    let RunPlan { batch_size, workers, .. } = *app.plan();
    let database = match target {
        Some(target) => target,
        None if workers.get() == 1 => {
            let report = answer(first.validate(&at, batch_size.get()).await)?;
            return Ok(with_odd_rows(merge(vec![report]), &odd));
        }
        None => app.database().clone(),
    };
    let reporter = first.state().reporter().clone();
    let total = database.count().await?;
    let scan = SharedScan::new(database, batch_size.get(), reporter, total, odd.clone());
    first.state_mut().wallets_mut().set_batches(Batches::Shared(scan.clone()));
    let mut others = JoinSet::new();
    for _ in 1..workers.get() {
        let mut worker = app.instance(Access::ReadOnly, Reporter::silent()).await?;
        worker.state_mut().wallets_mut().set_batches(Batches::Shared(scan.clone()));
        worker.state_mut().wallets_mut().set_odd_rows(odd.clone());
        let at = at.clone();
        others.spawn(async move { answer(worker.validate_batches(&at).await) });
    }
    // The first instance stays with the caller (its reporter draws the bar), so it runs here.
    let mut reports = vec![answer(first.validate_batches(&at).await)?];
    while let Some(joined) = others.join_next().await {
        reports.push(joined.context("a validate worker panicked")??);
    }
    Ok(with_odd_rows(merge(reports), &odd))
}

/// Lists the odd rows among the invalid wallets, counted in the total.
fn with_odd_rows(mut report: ValidateReport, odd: &OddRows) -> ValidateReport {
    let mut invalid = invalid_of(&mut report);
    report.total += odd.rows();
    report::add_odd_rows(&mut invalid, odd);
    set_invalid(&mut report, invalid);
    report
}

fn merge(reports: Vec<ValidateReport>) -> ValidateReport {
    let mut per_version = BTreeMap::<u32, u64>::new();
    let mut invalid = Failures::default();
    let mut merged = ValidateReport {
        total: 0,
        valid: 0,
        key_versions: Vec::new(),
        invalid: Vec::new(),
        invalid_count: 0,
    };
    for report in reports {
        merged.total += report.total;
        merged.valid += report.valid;
        for count in report.key_versions {
            *per_version.entry(count.version).or_default() += count.count;
        }
        report::add_failures(&mut invalid, report.invalid, report.invalid_count);
    }
    merged.key_versions =
        per_version.into_iter().map(|(version, count)| VersionCount { version, count }).collect();
    set_invalid(&mut merged, invalid);
    merged
}

/// The wallets `report` says do not open, taken out of it: the first ones by id listed, all
/// counted (a component's count below its list's length is the length).
fn invalid_of(report: &mut ValidateReport) -> Failures {
    let mut invalid = Failures::default();
    let (listed, count) = (std::mem::take(&mut report.invalid), std::mem::take(&mut report.invalid_count));
    report::add_failures(&mut invalid, listed, count);
    invalid
}

/// Puts `invalid` back into `report`.
fn set_invalid(report: &mut ValidateReport, invalid: Failures) {
    (report.invalid, report.invalid_count) = invalid.into_parts();
}
