//! `rotor audit`: runs an audit component (rotor's own, or a third party's) in the read-only
//! `auditor` world and reports what it found.

use crate::capabilities::report::one_line;
use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rotor_codec::listed::Listed;
use serde::Serialize;

use crate::answer::answer;
use crate::app::App;
use crate::bindings::auditor::audit::{AuditOptions, KeyLocation, Severity};
use crate::progress::Reporter;
use crate::report::{Failure, Outcome, unlisted_line, version_label};

/// What `rotor audit` prints (`--json`: this document).
#[derive(Debug, Serialize)]
pub struct AuditReport {
    /// The audit component that ran, and its digest.
    pub component: String,
    /// Hex sha256 of the audit component's file.
    pub component_sha256: String,
    /// Wallets the audit read.
    pub total: u64,
    /// Wallets per KEK version as their ciphertexts name it ("legacy" for the seed's format).
    pub key_versions: BTreeMap<String, u64>,
    /// Wallets that do not open with the KEK they name (legacy: with any KEK Vault has): the
    /// first 1,000 at most.
    pub unopenable: Vec<Failure>,
    /// All wallets that do not open, listed in `unopenable` or not.
    pub unopenable_count: u64,
    /// The current KEK's version; `None` if Vault has no KEK.
    pub current_kek_version: Option<u32>,
    /// Seconds since the current KEK was written to Vault; `None` if the component does not say.
    pub kek_age_seconds: Option<u64>,
    /// What the audit noticed, in the order it reported them.
    pub findings: Vec<Finding>,
    /// Findings of level `error`, plus wallets that do not open.
    pub errors: u64,
    /// Findings of level `warning`.
    pub warnings: u64,
    /// With several targets, each one's figures (its wallets' ids are named `table/id` above).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<AuditedTable>,
    /// Wall-clock time of the audit, in milliseconds.
    pub duration_ms: u64,
}

/// One target's part of an audit of several.
#[derive(Debug, Serialize)]
pub struct AuditedTable {
    /// The table.
    pub table: String,
    /// Wallets the audit read in it.
    pub total: u64,
    /// Those that do not open.
    pub unopenable: u64,
}

#[derive(Debug, Serialize)]
/// One thing the audit noticed, e.g. check `kek-archive`: "KEK v3 is not archived".
pub struct Finding {
    /// `info`, `warning` or `error`.
    pub level: &'static str,
    /// The name of the check that produced it.
    pub check: String,
    /// What it found, in words.
    pub message: String,
}

impl AuditReport {
    /// `WalletsFailed` if there is any error, else `Success`.
    pub fn outcome(&self) -> Outcome {
        if self.errors == 0 { Outcome::Success } else { Outcome::WalletsFailed }
    }

    /// The lines `rotor audit` prints without `--json`.
    pub fn human(&self) -> String {
        let versions: Vec<String> = self.key_versions.iter().map(|(v, n)| format!("{v}: {n}")).collect();
        let mut lines = vec![
            format!(
                "audit by {} (sha256 {}) in {} ms",
                self.component,
                &self.component_sha256[..12.min(self.component_sha256.len())],
                self.duration_ms
            ),
            format!(
                "{} wallets; per KEK version: {}; {} do not open",
                self.total,
                if versions.is_empty() { "none".into() } else { versions.join(", ") },
                self.unopenable_count
            ),
        ];
        for table in &self.tables {
            lines.push(format!(
                "  {}: {} wallets, {} do not open",
                table.table, table.total, table.unopenable
            ));
        }
        if let (Some(version), Some(age)) = (self.current_kek_version, self.kek_age_seconds) {
            lines.push(format!(
                "current KEK v{version}, written {} ago",
                crate::durations::human(std::time::Duration::from_secs(age))
            ));
        }
        // A third party's component wrote these: one escaped line each.
        lines.extend(
            self.findings
                .iter()
                .map(|f| format!("{:7} {}: {}", f.level, one_line(&f.check), one_line(&f.message))),
        );
        lines.extend(
            self.unopenable.iter().map(|f| format!("  {}: {}", one_line(&f.id), one_line(&f.reason))),
        );
        let unlisted = self.unopenable_count.saturating_sub(self.unopenable.len() as u64);
        let mut text = lines.join("\n");
        text.push_str(&unlisted_line(unlisted));
        text.push_str(&format!("\n{} error(s), {} warning(s)", self.errors, self.warnings));
        text
    }
}

/// Runs the audit component `app` loaded over every wallet of every target, and every KEK.
/// With several targets the component audits each in turn and the reports are added up; a
/// finding it makes for each (about the KEK, say) is listed once.
pub async fn run(app: &App, reporter: Reporter) -> anyhow::Result<AuditReport> {
    let started = Instant::now();
    let mut instance = app.audit_instance(reporter).await?;
    let targets = app.database().targets();
    let mut reports = Vec::with_capacity(targets.len());
    for target in &targets {
        if targets.len() > 1 {
            let wallets = instance.state_mut().wallets_mut();
            wallets.use_target(target.clone());
            wallets.set_odd_rows(crate::store::OddRows::default());
        }
        let report = audit_table(app, &mut instance).await;
        let report = match report {
            Ok(report) => report,
            Err(e) => {
                instance.state().reporter().finish();
                return Err(e);
            }
        };
        reports.push((target.table().table.clone(), report));
    }
    instance.state().reporter().finish();
    let mut merged = match reports.len() {
        1 => reports.pop().map(|(_, report)| report).expect("one report"),
        _ => merge(reports),
    };
    merged.component = app.component().origin.clone();
    merged.component_sha256 = app.component().sha256.clone();
    merged.duration_ms = started.elapsed().as_millis() as u64;
    Ok(merged)
}

/// The reports of each target as one: figures added up, wallets named `table/id`, findings
/// listed once each.
fn merge(reports: Vec<(String, AuditReport)>) -> AuditReport {
    let mut merged = AuditReport {
        component: String::new(),
        component_sha256: String::new(),
        total: 0,
        key_versions: BTreeMap::new(),
        unopenable: Vec::new(),
        unopenable_count: 0,
        current_kek_version: None,
        kek_age_seconds: None,
        findings: Vec::new(),
        errors: 0,
        warnings: 0,
        tables: Vec::new(),
        duration_ms: 0,
    };
    let mut unopenable = Listed::default();
    for (table, report) in reports {
        merged.total += report.total;
        for (version, count) in report.key_versions {
            *merged.key_versions.entry(version).or_default() += count;
        }
        merged.tables.push(AuditedTable {
            table: table.clone(),
            total: report.total,
            unopenable: report.unopenable_count,
        });
        let named = report
            .unopenable
            .into_iter()
            .map(|f| Failure { id: format!("{table}/{}", f.id), reason: f.reason });
        unopenable.extend(named.collect(), report.unopenable_count);
        merged.current_kek_version = merged.current_kek_version.or(report.current_kek_version);
        merged.kek_age_seconds = merged.kek_age_seconds.or(report.kek_age_seconds);
        for finding in report.findings {
            let seen = merged.findings.iter().any(|f| {
                f.level == finding.level && f.check == finding.check && f.message == finding.message
            });
            if !seen {
                merged.findings.push(finding);
            }
        }
    }
    (merged.unopenable, merged.unopenable_count) = unopenable.into_parts();
    let count = |level: &str| merged.findings.iter().filter(|f| f.level == level).count() as u64;
    merged.errors = count("error").max(u64::from(merged.unopenable_count > 0));
    merged.warnings = count("warning");
    merged
}

/// One run of the audit over the table the instance reads now.
async fn audit_table(
    app: &App,
    instance: &mut crate::component::AuditInstance,
) -> anyhow::Result<AuditReport> {
    let started = Instant::now();
    let options = AuditOptions {
        batch_size: app.plan().batch_size.get(),
        now: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    };
    let at = KeyLocation { key_path: app.settings().key_path.clone() };
    let report = answer(instance.run(&at, options).await)?;
    let findings: Vec<Finding> = report
        .findings
        .into_iter()
        .map(|f| Finding {
            level: match f.level {
                Severity::Info => "info",
                Severity::Warning => "warning",
                Severity::Error => "error",
            },
            check: f.check,
            message: f.message,
        })
        .collect();
    let count = |level: &str| findings.iter().filter(|f| f.level == level).count() as u64;
    let mut unopenable = Listed::default();
    let listed = report.unopenable.into_iter().map(|f| Failure { id: f.id, reason: f.reason });
    unopenable.extend(listed.collect(), report.unopenable_count);
    // Rows the component was never handed (no text ciphertext, no usable id): see `store::OddRows`.
    let odd = instance.state().wallets().odd_rows().entries();
    let odd_rows: u64 = odd.iter().map(|row| row.rows).sum();
    for row in odd {
        unopenable.push(Failure { id: row.id, reason: row.reason });
    }
    let (unopenable, unopenable_count) = unopenable.into_parts();
    Ok(AuditReport {
        component: app.component().origin.clone(),
        component_sha256: app.component().sha256.clone(),
        total: report.total + odd_rows,
        key_versions: report.key_versions.iter().map(|c| (version_label(c.version), c.count)).collect(),
        errors: count("error").max(u64::from(unopenable_count > 0)),
        warnings: count("warning"),
        unopenable,
        unopenable_count,
        current_kek_version: report.current_version,
        kek_age_seconds: report.kek_age_seconds,
        findings,
        tables: Vec::new(),
        duration_ms: started.elapsed().as_millis() as u64,
    })
}
