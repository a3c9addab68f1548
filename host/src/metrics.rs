//! Prometheus metrics: what rotor's journal, the wallet table and Vault say, rendered in the
//! text exposition format, for node-exporter's textfile collector (`--metrics-file`) or rotor's
//! own exporter (`rotor serve`).
//!
//! Counts come from the journal and the database, not from this process's counters, so a file
//! written after any command (or by any rotor on any host) is complete. Only the invalid-wallet
//! count needs a pass over every wallet; commands that make none (`status`, a skipped rotation)
//! carry over the last count measured, with the time it was measured.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::app::App;

/// What a pass over every wallet found (`validate`, or a rotation's wallets left behind).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WalletCheck {
    pub invalid: u64,
    /// Unix seconds.
    pub at: f64,
}

impl WalletCheck {
    pub fn now(invalid: u64) -> WalletCheck {
        WalletCheck { invalid, at: unix_seconds(SystemTime::now()) }
    }
}

/// What a command saw besides what [`gather`] reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct Observed {
    pub check: Option<WalletCheck>,
    /// The rotation this process just finished, and how long it took to the millisecond (the
    /// journal keeps whole seconds).
    pub rotation: Option<(u64, Duration)>,
}

/// The journal's view.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JournalFacts {
    pub rotations: u64,
    /// Finished rotations that left wallets behind (they did not open or could not be moved).
    pub failed: u64,
    pub in_progress: bool,
    /// Unix seconds the latest finished rotation ended, and its duration in seconds.
    pub last_finished: Option<(f64, f64)>,
}

/// Everything one metrics page shows; `None` where the source could not be read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub journal: Option<JournalFacts>,
    /// Current KEK version and its age in seconds (Vault's metadata).
    pub kek: Option<(u64, f64)>,
    /// Wallets per KEK version (`legacy` for the seed's format).
    pub wallets: Option<BTreeMap<String, u64>>,
    pub check: Option<WalletCheck>,
    /// Exit code of the command (or exporter refresh: 0 or 1) and when it ended.
    pub last_run: Option<(u8, f64)>,
}

pub fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn parse_time(rfc3339: &str) -> Option<f64> {
    humantime::parse_rfc3339_weak(rfc3339).ok().map(unix_seconds)
}

/// Reads the journal, the wallet counts and the KEK's metadata. A source that fails is left out
/// (and logged), so a page still shows what could be read.
pub async fn gather(app: &App, observed: Observed) -> Snapshot {
    let journal = match app.database().rotations().await {
        Ok(rotations) => {
            let last = rotations.iter().find(|r| r.status == crate::store::RotationStatus::Finished);
            let last_finished = last.and_then(|r| {
                let ended = parse_time(r.finished_at.as_deref()?)?;
                let duration = match observed.rotation {
                    Some((id, exact)) if id == r.id as u64 => exact.as_secs_f64(),
                    _ => (ended - parse_time(&r.started_at)?).max(0.0),
                };
                Some((ended, duration))
            });
            Some(JournalFacts {
                rotations: rotations.len() as u64,
                failed: rotations
                    .iter()
                    .filter(|r| r.status == crate::store::RotationStatus::Finished && r.failed > 0)
                    .count() as u64,
                in_progress: rotations.iter().any(|r| r.status == crate::store::RotationStatus::Running),
                last_finished,
            })
        }
        Err(e) => {
            tracing::warn!("metrics: cannot read rotor's journal: {e}");
            None
        }
    };
    let wallets = app
        .database()
        .version_counts()
        .await
        .inspect_err(|e| tracing::warn!("metrics: cannot count wallets: {e}"))
        .ok();
    let key_path = &app.settings().key_path;
    let kek = match app.kv().metadata(key_path).await {
        Ok(Some(metadata)) => metadata
            .versions
            .iter()
            .find(|v| v.version == metadata.current_version)
            .and_then(|v| parse_time(&v.created_time))
            .map(|created| (metadata.current_version, (unix_seconds(SystemTime::now()) - created).max(0.0))),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("metrics: cannot read the KEK's metadata: {e}");
            None
        }
    };
    Snapshot { journal, kek, wallets, check: observed.check, last_run: None }
}

/// Appends one metric family: HELP, TYPE and its samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    if samples.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        // Whole numbers print without a fraction; Prometheus reads both.
        if value.fract() == 0.0 && value.abs() < 1e15 {
            let _ = writeln!(out, "{name}{labels} {}", *value as i64);
        } else {
            let _ = writeln!(out, "{name}{labels} {value:.3}");
        }
    }
}

fn one(value: Option<f64>) -> Vec<(String, f64)> {
    value.map(|v| vec![(String::new(), v)]).unwrap_or_default()
}

/// A label value with `\`, `"` and newlines escaped as the text format requires.
fn label_value(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Snapshot {
    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let journal = self.journal.as_ref();
        family(
            &mut out,
            "rotor_rotations_total",
            "counter",
            "Rotations recorded in rotor's journal, rollbacks included.",
            &one(journal.map(|j| j.rotations as f64)),
        );
        family(
            &mut out,
            "rotor_rotations_failed_total",
            "counter",
            "Finished rotations that left wallets behind (they do not open or could not be moved).",
            &one(journal.map(|j| j.failed as f64)),
        );
        family(
            &mut out,
            "rotor_rotation_in_progress",
            "gauge",
            "1 while a rotation is unfinished (running, or interrupted: `rotor rotate` resumes it).",
            &one(journal.map(|j| if j.in_progress { 1.0 } else { 0.0 })),
        );
        let last = journal.and_then(|j| j.last_finished);
        family(
            &mut out,
            "rotor_last_rotation_timestamp_seconds",
            "gauge",
            "When the latest finished rotation ended (Unix time).",
            &one(last.map(|(ended, _)| ended)),
        );
        family(
            &mut out,
            "rotor_last_rotation_duration_seconds",
            "gauge",
            "How long the latest finished rotation took.",
            &one(last.map(|(_, duration)| duration)),
        );
        family(
            &mut out,
            "rotor_kek_version",
            "gauge",
            "The current KEK's version in Vault.",
            &one(self.kek.map(|(version, _)| version as f64)),
        );
        family(
            &mut out,
            "rotor_kek_age_seconds",
            "gauge",
            "Age of the current KEK, from Vault's metadata.",
            &one(self.kek.map(|(_, age)| age)),
        );
        let wallets: Vec<(String, f64)> = self
            .wallets
            .iter()
            .flatten()
            .map(|(version, count)| (format!("{{key_version=\"{}\"}}", label_value(version)), *count as f64))
            .collect();
        family(
            &mut out,
            "rotor_wallets",
            "gauge",
            "Wallets per KEK version their ciphertext names (\"legacy\": the seed's format, no version).",
            &wallets,
        );
        family(
            &mut out,
            "rotor_invalid_wallets",
            "gauge",
            "Wallets that did not open at the last check (validate, or a rotation's wallets left behind).",
            &one(self.check.map(|c| c.invalid as f64)),
        );
        family(
            &mut out,
            "rotor_last_check_timestamp_seconds",
            "gauge",
            "When rotor_invalid_wallets was measured (Unix time).",
            &one(self.check.map(|c| c.at)),
        );
        family(
            &mut out,
            "rotor_last_run_exit_code",
            "gauge",
            "Exit code of the last rotor command that wrote these metrics (0 ok, 1 error, 3 wallets left behind).",
            &one(self.last_run.map(|(code, _)| code as f64)),
        );
        family(
            &mut out,
            "rotor_last_run_timestamp_seconds",
            "gauge",
            "When that command ended (Unix time).",
            &one(self.last_run.map(|(_, at)| at)),
        );
        out
    }
}

/// The value of an unlabelled sample in a page rotor wrote.
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The wallet check a previous page reported, to carry over.
pub fn previous_check(page: &str) -> Option<WalletCheck> {
    Some(WalletCheck {
        invalid: sample(page, "rotor_invalid_wallets")? as u64,
        at: sample(page, "rotor_last_check_timestamp_seconds")?,
    })
}

/// Writes `content` to `path` atomically: a temporary file in the same folder, flushed to disk,
/// then renamed over `path`, so a collector never reads half a file. The temporary name does not
/// end in `.prom`, so the textfile collector ignores it.
pub fn write_atomically(path: &Path, content: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| std::io::Error::other("the metrics path names no file"))?;
    let temporary = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(content.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// Collects what a command observed and writes the metrics file when the command ends.
pub struct Recorder {
    path: Option<PathBuf>,
    snapshot: Mutex<Option<Snapshot>>,
}

impl Recorder {
    /// `path` is `--metrics-file`; without it every method does nothing.
    pub fn new(path: Option<PathBuf>) -> Recorder {
        Recorder { path, snapshot: Mutex::new(None) }
    }

    /// Gathers the page while the command's connections are open.
    pub async fn observe(&self, app: &App, observed: Observed) {
        if self.path.is_none() {
            return;
        }
        let snapshot = gather(app, observed).await;
        *self.snapshot.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(snapshot);
    }

    /// Writes the page with the command's exit code. A command that failed before it could
    /// gather leaves the previous page's figures, with the failure's exit code and time.
    pub fn finish(&self, exit_code: u8) {
        let Some(path) = &self.path else { return };
        let previous = std::fs::read_to_string(path).ok();
        let gathered = self.snapshot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let mut snapshot = match gathered {
            Some(snapshot) => snapshot,
            None => previous.as_deref().map(parse_page).unwrap_or_default(),
        };
        if snapshot.check.is_none() {
            snapshot.check = previous.as_deref().and_then(previous_check);
        }
        snapshot.last_run = Some((exit_code, unix_seconds(SystemTime::now())));
        match write_atomically(path, &snapshot.render()) {
            Ok(()) => tracing::debug!(path = %path.display(), "metrics written"),
            Err(e) => tracing::error!("cannot write the metrics file {}: {e}", path.display()),
        }
    }
}

/// Reads back a page rotor wrote (to carry its figures over a failed command).
pub fn parse_page(page: &str) -> Snapshot {
    let journal = sample(page, "rotor_rotations_total").map(|rotations| JournalFacts {
        rotations: rotations as u64,
        failed: sample(page, "rotor_rotations_failed_total").unwrap_or(0.0) as u64,
        in_progress: sample(page, "rotor_rotation_in_progress") == Some(1.0),
        last_finished: sample(page, "rotor_last_rotation_timestamp_seconds")
            .zip(sample(page, "rotor_last_rotation_duration_seconds")),
    });
    let wallets: BTreeMap<String, u64> = page
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("rotor_wallets{key_version=\"")?;
            let (version, value) = rest.split_once("\"} ")?;
            Some((version.to_owned(), value.trim().parse::<f64>().ok()? as u64))
        })
        .collect();
    Snapshot {
        journal,
        kek: sample(page, "rotor_kek_version")
            .zip(sample(page, "rotor_kek_age_seconds"))
            .map(|(v, a)| (v as u64, a)),
        wallets: (!wallets.is_empty()).then_some(wallets),
        check: previous_check(page),
        last_run: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            journal: Some(JournalFacts {
                rotations: 3,
                failed: 1,
                in_progress: false,
                last_finished: Some((1_790_000_000.0, 2.5)),
            }),
            kek: Some((4, 86_400.0)),
            wallets: Some(BTreeMap::from([("legacy".into(), 2), ("4".into(), 1000)])),
            check: Some(WalletCheck { invalid: 2, at: 1_790_000_100.0 }),
            last_run: Some((3, 1_790_000_200.0)),
        }
    }

    #[test]
    fn renders_the_text_format() {
        let page = snapshot().render();
        for line in [
            "# TYPE rotor_rotations_total counter",
            "rotor_rotations_total 3",
            "rotor_rotations_failed_total 1",
            "rotor_rotation_in_progress 0",
            "rotor_last_rotation_timestamp_seconds 1790000000",
            "rotor_last_rotation_duration_seconds 2.500",
            "rotor_kek_age_seconds 86400",
            "rotor_wallets{key_version=\"4\"} 1000",
            "rotor_wallets{key_version=\"legacy\"} 2",
            "rotor_invalid_wallets 2",
            "rotor_last_run_exit_code 3",
        ] {
            assert!(page.lines().any(|l| l == line), "missing {line:?} in:\n{page}");
        }
        // Every sample belongs to a family announced just before it.
        let mut announced = None;
        for line in page.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                announced = rest.split(' ').next().map(str::to_owned);
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(Some(name), announced.as_deref(), "{line}");
            }
        }
    }

    #[test]
    fn a_page_reads_back() {
        let mut expected = snapshot();
        expected.last_run = None;
        assert_eq!(parse_page(&snapshot().render()), expected);
        assert_eq!(label_value("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }

    #[test]
    fn writes_atomically_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("rotor-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rotor.prom");
        write_atomically(&path, "a 1\n").unwrap();
        write_atomically(&path, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("rotor.prom")]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(write_atomically(&dir.join("missing/rotor.prom"), "x").is_err());
    }
}
