//! `validate` spread over workers: instances of the component, made from the one compiled
//! component, each opening the batches of one shared read-only pass over the table. Opening a
//! wallet is AES inside wasm, so the rate grows with the cores; nothing is written anywhere.
//! Rows that hold no wallet to open (see [`crate::store::OddRows`]) are listed as invalid.

use std::collections::BTreeMap;

use anyhow::Context;
use tokio::task::JoinSet;

use crate::app::App;
use crate::bindings::operations::ValidateReport;
use crate::bindings::types::{VersionCount, WalletFailure};
use crate::cli::answer;
use crate::component::Instance;
use crate::grants::Access;
use crate::progress::Reporter;
use crate::store::OddRows;
use crate::walk::{Batches, SharedScan};

/// Opens every wallet with `workers` instances, `first` among them; one report for all.
pub async fn validate(
    app: &App,
    first: &mut Instance,
    batch_size: u32,
    workers: usize,
) -> anyhow::Result<ValidateReport> {
    let at = app.key_location();
    let odd = first.state().odd_rows().clone();
    if workers <= 1 {
        let report = answer(first.validate(&at, batch_size).await)?;
        return Ok(with_odd_rows(merge(vec![report]), &odd));
    }
    let database = app.database();
    let reporter = first.state().reporter().clone();
    let batch_size = batch_size.min(app.settings().sandbox.limits.max_batch_rows);
    let scan = SharedScan::new(database.clone(), batch_size, reporter, database.count().await?);
    first.state_mut().set_batches(Batches::Shared(scan.clone()));
    let mut others = JoinSet::new();
    for _ in 1..workers {
        let mut worker = app.instance(Access::ReadOnly, Reporter::silent()).await?;
        worker.state_mut().set_batches(Batches::Shared(scan.clone()));
        worker.state_mut().set_odd_rows(odd.clone());
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
    for row in odd.entries() {
        report.total += row.rows;
        report.invalid.push(WalletFailure::from(row));
    }
    report.invalid.sort_by(|a, b| a.id.cmp(&b.id));
    report
}

fn merge(reports: Vec<ValidateReport>) -> ValidateReport {
    let mut per_version = BTreeMap::<u32, u64>::new();
    let mut merged = ValidateReport { total: 0, valid: 0, key_versions: Vec::new(), invalid: Vec::new() };
    for report in reports {
        merged.total += report.total;
        merged.valid += report.valid;
        for count in report.key_versions {
            *per_version.entry(count.version).or_default() += count.count;
        }
        merged.invalid.extend(report.invalid);
    }
    merged.key_versions =
        per_version.into_iter().map(|(version, count)| VersionCount { version, count }).collect();
    merged.invalid.sort_by(|a, b| a.id.cmp(&b.id));
    merged
}
