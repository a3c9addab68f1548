//! `rotor audit`: runs an audit component (rotor's own, or a third party's) in the read-only
//! `auditor` world and reports what it found.

use crate::capabilities::report::one_line;
use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::answer::answer;
use crate::app::App;
use crate::bindings::auditor::audit::{AuditOptions, KeyLocation, Severity};
use crate::progress::Reporter;
use crate::report::{Failure, Outcome, version_label};

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
    /// Wallets that do not open with the KEK they name (legacy: with any KEK Vault has).
    pub unopenable: Vec<Failure>,
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
    /// Wall-clock time of the audit, in milliseconds.
    pub duration_ms: u64,
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
                self.unopenable.len()
            ),
        ];
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
        lines.push(format!("{} error(s), {} warning(s)", self.errors, self.warnings));
        lines.join("\n")
    }
}

/// Runs the audit component `app` loaded over every wallet and KEK.
pub async fn run(app: &App, reporter: Reporter) -> anyhow::Result<AuditReport> {
    let started = Instant::now();
    let mut instance = app.audit_instance(reporter).await?;
    let options = AuditOptions {
        batch_size: app.plan().batch_size.get(),
        now: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    };
    let at = KeyLocation { key_path: app.settings().key_path.clone() };
    let report = answer(instance.run(&at, options).await);
    instance.state().reporter().finish();
    let report = report?;
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
    let mut unopenable: Vec<Failure> =
        report.unopenable.into_iter().map(|f| Failure { id: f.id, reason: f.reason }).collect();
    // Rows the component was never handed (no text ciphertext, no usable id): see `store::OddRows`.
    let odd = instance.state().wallets().odd_rows().entries();
    let odd_rows: u64 = odd.iter().map(|row| row.rows).sum();
    unopenable.extend(odd.into_iter().map(|row| Failure { id: row.id, reason: row.reason }));
    Ok(AuditReport {
        component: app.component().origin.clone(),
        component_sha256: app.component().sha256.clone(),
        total: report.total + odd_rows,
        key_versions: report.key_versions.iter().map(|c| (version_label(c.version), c.count)).collect(),
        errors: count("error").max(u64::from(!unopenable.is_empty())),
        warnings: count("warning"),
        unopenable,
        current_kek_version: report.current_version,
        kek_age_seconds: report.kek_age_seconds,
        findings,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}
