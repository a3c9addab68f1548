//! Prometheus metrics: what rotor's journal, the wallet table and Vault say, rendered in the
//! text exposition format, for node-exporter's textfile collector (`--metrics-file`) or rotor's
//! own exporter (`rotor serve`).
//!
//! Counts come from the journal and the database, not from this process's counters, so a file
//! written after any command (or by any rotor on any host) is complete. Only the invalid-wallet
//! count needs a pass over every wallet; commands that make none (`status`, a skipped rotation)
//! carry over the last count measured, with the time it was measured.
//!
//! The page is encoded by `prometheus-client` (the Prometheus project's Rust client) in the
//! Prometheus text format, version 0.0.4, the format both the textfile collector and a scrape
//! read. A [`Snapshot`] is a [`Collector`]: its figures are read from elsewhere, not counted in
//! this process, so each page is a fresh [`Registry`] holding one snapshot. The crate only
//! writes pages; [`parse_page`] reads back the few lines rotor needs from its own previous page.
//!
//! (Over 500 lines because of its unit tests, a third of the file: the code itself is ~530, one
//! family per figure, each with the help text dashboards rely on.)

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::app::App;

/// The `Content-Type` of [`Snapshot::render`]'s page: the text format, version 0.0.4.
pub use prometheus_text::CONTENT_TYPE;

/// What a pass over every wallet found (`validate`, or a rotation's wallets left behind).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WalletCheck {
    /// Wallets that did not open.
    pub invalid: u64,
    /// Unix seconds.
    pub at: f64,
}

impl WalletCheck {
    /// A check that ends now.
    pub fn now(invalid: u64) -> WalletCheck {
        WalletCheck { invalid, at: unix_seconds(SystemTime::now()) }
    }
}

/// What a command saw besides what [`gather`] reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct Observed {
    /// A pass over every wallet this process just made.
    pub check: Option<WalletCheck>,
    /// The rotation this process just finished, and how long it took to the millisecond (the
    /// journal keeps whole seconds).
    pub rotation: Option<(u64, Duration)>,
}

/// The journal's view.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JournalFacts {
    /// Rotations recorded, rollbacks included.
    pub rotations: u64,
    /// Finished rotations that left wallets behind (they did not open or could not be moved).
    pub failed: u64,
    /// A rotation is unfinished (running, or interrupted).
    pub in_progress: bool,
    /// Unix seconds the latest finished rotation ended, and its duration in seconds.
    pub last_finished: Option<(f64, f64)>,
}

/// One KEK version on a page: its state and the rows naming it in each table under the KEK.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionFacts {
    /// The version.
    pub version: u32,
    /// `staged`, `current`, `archived`, `destroyed` or `missing` (see `rotor keys`).
    pub state: String,
    /// Rows naming it per table, rows set aside by `rotor quarantine` left out.
    pub rows: BTreeMap<String, u64>,
}

/// Everything one metrics page shows; `None` where the source could not be read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// What rotor's journal says.
    pub journal: Option<JournalFacts>,
    /// Current KEK version and its age in seconds (Vault's metadata).
    pub kek: Option<(u64, f64)>,
    /// Wallets per KEK version (`legacy` for the seed's format).
    pub wallets: Option<BTreeMap<String, u64>>,
    /// Every KEK version, as `rotor keys` lists it (without reading any key).
    pub versions: Option<Vec<VersionFacts>>,
    /// The latest pass over every wallet (measured now or carried over).
    pub check: Option<WalletCheck>,
    /// Exit code of the command (or exporter refresh: 0 or 1) and when it ended.
    pub last_run: Option<(u8, f64)>,
    /// Whose figures these are, on every sample: `profile` and `tenant` (when chosen),
    /// `key_path` and `table`, so that the pages of jobs for several environments or KEKs, side by side
    /// in one textfile directory, do not collide.
    pub labels: Vec<(String, String)>,
}

/// The labels of a page for `settings`: see [`Snapshot::labels`].
pub fn scope_labels(settings: &crate::app::Settings) -> Vec<(String, String)> {
    let scope = settings.scope();
    let tables: Vec<&str> = scope.targets.iter().map(|t| t.table.as_str()).collect();
    let profile = settings.profile.iter().map(|p| ("profile".to_owned(), p.clone()));
    let tenant = settings.tenant.iter().map(|t| ("tenant".to_owned(), t.clone()));
    profile
        .chain(tenant)
        .chain([("key_path".to_owned(), scope.key_path), ("table".to_owned(), tables.join(","))])
        .collect()
}

/// `time` as Unix seconds (0 before 1970).
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
        .version_counts_summed()
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
    let versions = match crate::inventory::states(app).await {
        Ok(inventory) => Some(
            inventory
                .versions
                .into_iter()
                .map(|v| VersionFacts {
                    version: v.version,
                    state: v.state.as_str().to_owned(),
                    rows: v.rows,
                })
                .collect(),
        ),
        Err(e) => {
            tracing::warn!("metrics: cannot list the KEK's versions: {e:#}");
            None
        }
    };
    let labels = scope_labels(app.settings());
    Snapshot { journal, kek, wallets, versions, check: observed.check, last_run: None, labels }
}

/// A family with one sample (labelled only with the page's [`Snapshot::labels`]), left out
/// when the figure is unknown.
fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: Option<impl EncodeMetric>,
) -> fmt::Result {
    let Some(metric) = metric else { return Ok(()) };
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Seconds to the millisecond, the precision pages have always had (the encoder would print
/// every digit of the float).
fn millis(seconds: f64) -> ConstGauge<f64> {
    ConstGauge::new((seconds * 1000.0).round() / 1000.0)
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let e = &mut encoder;
        let journal = self.journal.as_ref();
        // prometheus-client appends `_total` to a counter's name (the OpenMetrics rule), so the
        // two counters are named without it here. The page says `rotor_rotations_total` and
        // `rotor_rotations_failed_total`, as it always has: dashboards and alerts use those
        // names (`tests::the_page_keeps_its_names` pins every name, type and help text).
        single(
            e,
            "rotor_rotations",
            "Rotations recorded in rotor's journal, rollbacks included.",
            journal.map(|j| ConstCounter::new(j.rotations)),
        )?;
        single(
            e,
            "rotor_rotations_failed",
            "Finished rotations that left wallets behind (they do not open or could not be moved).",
            journal.map(|j| ConstCounter::new(j.failed)),
        )?;
        single(
            e,
            "rotor_rotation_in_progress",
            "1 while a rotation is unfinished (running, or interrupted: `rotor rotate` resumes it).",
            journal.map(|j| ConstGauge::new(i64::from(j.in_progress))),
        )?;
        let last = journal.and_then(|j| j.last_finished);
        single(
            e,
            "rotor_last_rotation_timestamp_seconds",
            "When the latest finished rotation ended (Unix time).",
            last.map(|(ended, _)| millis(ended)),
        )?;
        single(
            e,
            "rotor_last_rotation_duration_seconds",
            "How long the latest finished rotation took.",
            last.map(|(_, duration)| millis(duration)),
        )?;
        single(
            e,
            "rotor_kek_version",
            "The current KEK's version in Vault.",
            self.kek.map(|(version, _)| ConstGauge::new(version)),
        )?;
        single(
            e,
            "rotor_kek_age_seconds",
            "Age of the current KEK, from Vault's metadata.",
            self.kek.map(|(_, age)| millis(age)),
        )?;
        if let Some(wallets) = self.wallets.as_ref().filter(|w| !w.is_empty()) {
            let mut family = e.encode_descriptor(
                "rotor_wallets",
                "Wallets per KEK version their ciphertext names (\"legacy\": the seed's format, no version).",
                None,
                MetricType::Gauge,
            )?;
            for (version, count) in wallets {
                // The encoder escapes the label value (`\\`, `"`, newline).
                ConstGauge::new(*count)
                    .encode(family.encode_family(&[("key_version", version.as_str())])?)?;
            }
        }
        if let Some(versions) = self.versions.as_ref().filter(|v| !v.is_empty()) {
            let mut family = e.encode_descriptor(
                "rotor_kek_versions",
                "Each KEK version Vault or a row knows of, labelled with its state (staged, current, archived, \
                 destroyed, missing): always 1.",
                None,
                MetricType::Gauge,
            )?;
            for v in versions {
                let version = v.version.to_string();
                ConstGauge::new(1).encode(
                    family
                        .encode_family(&[("key_version", version.as_str()), ("state", v.state.as_str())])?,
                )?;
            }
            let mut family = e.encode_descriptor(
                "rotor_kek_version_rows",
                "Rows naming each KEK version, per table under the KEK (rows set aside by rotor quarantine \
                 left out): a destroyable version has none.",
                None,
                MetricType::Gauge,
            )?;
            for v in versions {
                let version = v.version.to_string();
                for (target, rows) in &v.rows {
                    ConstGauge::new(*rows).encode(family.encode_family(&[
                        ("key_version", version.as_str()),
                        ("target", target.as_str()),
                    ])?)?;
                }
            }
        }
        single(
            e,
            "rotor_invalid_wallets",
            "Wallets that did not open at the last check (validate, or a rotation's wallets left behind).",
            self.check.map(|c| ConstGauge::new(c.invalid)),
        )?;
        single(
            e,
            "rotor_last_check_timestamp_seconds",
            "When rotor_invalid_wallets was measured (Unix time).",
            self.check.map(|c| millis(c.at)),
        )?;
        single(
            e,
            "rotor_last_run_exit_code",
            "Exit code of the last rotor command that wrote these metrics (0 ok, 1 error, 3 wallets left behind).",
            self.last_run.map(|(code, _)| ConstGauge::new(i64::from(code))),
        )?;
        single(
            e,
            "rotor_last_run_timestamp_seconds",
            "When that command ended (Unix time).",
            self.last_run.map(|(_, at)| millis(at)),
        )
    }
}

impl Snapshot {
    /// The Prometheus text exposition format (version 0.0.4; no `# EOF`, which only
    /// OpenMetrics has). A figure that is unknown is left out, HELP and TYPE included.
    pub fn render(&self) -> String {
        // The page's labels go on every sample as the registry's constant labels, ahead of a
        // sample's own (`key_version`).
        let labels = self.labels.iter().map(|(key, value)| (key.clone().into(), value.clone().into()));
        let mut registry = Registry::with_labels(labels);
        registry.register_collector(Box::new(self.clone()));
        let mut page = String::new();
        prometheus_text::encode(&mut page, &registry).expect(
            "encoding into a String cannot fail: the snapshot's encoder fails only when its writer does",
        );
        page
    }
}

/// One sample line of a page rotor wrote: its name, labels (unescaped) and value. Reading is by
/// hand: prometheus-client only encodes, and these lines need to read back only what
/// [`Snapshot::render`] writes.
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    /// `name value` or `name{key="value",…} value`; `None` for comments and anything else.
    fn parse(line: &str) -> Option<Sample> {
        let end = line.find(['{', ' '])?;
        let (name, mut rest) = (line[..end].to_owned(), &line[end..]);
        let mut labels = Vec::new();
        if let Some(mut inside) = rest.strip_prefix('{') {
            while let Some((key, after)) = inside.split_once("=\"") {
                let mut chars = after.char_indices();
                let mut value = String::new();
                let close = loop {
                    match chars.next()? {
                        (at, '"') => break at,
                        (_, '\\') => value.push(match chars.next()?.1 {
                            'n' => '\n',
                            escaped => escaped,
                        }),
                        (_, c) => value.push(c),
                    }
                };
                labels.push((key.trim_start_matches(',').to_owned(), value));
                inside = &after[close + 1..];
                if let Some(after_labels) = inside.strip_prefix('}') {
                    rest = after_labels;
                    break;
                }
            }
        }
        let value = rest.strip_prefix(' ')?.trim().parse().ok()?;
        Some(Sample { name, labels, value })
    }

    /// The value of `key`, if the sample has that label.
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The value of the sample named `name` in a page rotor wrote (the first, if several).
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines().filter_map(Sample::parse).find(|s| s.name == name).map(|s| s.value)
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
    labels: Vec<(String, String)>,
}

impl Recorder {
    /// `path` is `--metrics-file`; without it every method does nothing. `labels` are the
    /// command's [`scope_labels`], for a page written without a snapshot.
    pub fn new(path: Option<PathBuf>, labels: Vec<(String, String)>) -> Recorder {
        Recorder { path, snapshot: Mutex::new(None), labels }
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
        if !self.labels.is_empty() {
            snapshot.labels = self.labels.clone();
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
    let samples: Vec<Sample> = page.lines().filter_map(Sample::parse).collect();
    let wallets: BTreeMap<String, u64> = samples
        .iter()
        .filter(|s| s.name == "rotor_wallets")
        .filter_map(|s| Some((s.label("key_version")?.to_owned(), s.value as u64)))
        .collect();
    let mut versions: Vec<VersionFacts> = samples
        .iter()
        .filter(|s| s.name == "rotor_kek_versions")
        .filter_map(|s| {
            let version = s.label("key_version")?.parse().ok()?;
            Some(VersionFacts { version, state: s.label("state")?.to_owned(), rows: BTreeMap::new() })
        })
        .collect();
    for s in samples.iter().filter(|s| s.name == "rotor_kek_version_rows") {
        let named = s.label("key_version").and_then(|v| v.parse::<u32>().ok());
        if let (Some(v), Some(target)) =
            (versions.iter_mut().find(|v| Some(v.version) == named), s.label("target"))
        {
            v.rows.insert(target.to_owned(), s.value as u64);
        }
    }
    // Every sample carries the page's labels; some carry their own besides.
    let own = ["key_version", "state", "target"];
    let labels = samples
        .first()
        .map(|s| s.labels.iter().filter(|(key, _)| !own.contains(&key.as_str())).cloned().collect())
        .unwrap_or_default();
    Snapshot {
        journal,
        kek: sample(page, "rotor_kek_version")
            .zip(sample(page, "rotor_kek_age_seconds"))
            .map(|(v, a)| (v as u64, a)),
        wallets: (!wallets.is_empty()).then_some(wallets),
        versions: (!versions.is_empty()).then_some(versions),
        check: previous_check(page),
        last_run: None,
        labels,
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
            versions: Some(vec![
                VersionFacts {
                    version: 4,
                    state: "current".into(),
                    rows: BTreeMap::from([("wallets".into(), 990), ("api_tokens".into(), 10)]),
                },
                VersionFacts { version: 3, state: "archived".into(), rows: BTreeMap::new() },
            ]),
            check: Some(WalletCheck { invalid: 2, at: 1_790_000_100.0 }),
            last_run: Some((3, 1_790_000_200.0)),
            labels: Vec::new(),
        }
    }

    #[test]
    fn every_sample_says_whose_it_is() {
        let labels = vec![
            ("profile".to_owned(), "prod".to_owned()),
            ("key_path".to_owned(), "secret/ibn/\"odd\"\\key".to_owned()),
            ("table".to_owned(), "wallets".to_owned()),
        ];
        let labelled = Snapshot { labels: labels.clone(), ..snapshot() };
        let page = labelled.render();
        let scope = r#"profile="prod",key_path="secret/ibn/\"odd\"\\key",table="wallets""#;
        for line in [
            format!("rotor_rotations_total{{{scope}}} 3"),
            format!("rotor_kek_age_seconds{{{scope}}} 86400.0"),
            format!("rotor_wallets{{{scope},key_version=\"4\"}} 1000"),
        ] {
            assert!(page.lines().any(|l| l == line), "missing {line:?} in:\n{page}");
        }
        let samples = page.lines().filter(|l| !l.starts_with('#'));
        assert!(samples.clone().count() > 10 && samples.clone().all(|l| l.contains(scope)), "{page}");
        // A failed command's page carries the figures and the labels over.
        let mut expected = labelled;
        expected.last_run = None;
        assert_eq!(parse_page(&page), expected);
    }

    #[test]
    fn renders_the_text_format() {
        let page = snapshot().render();
        for line in [
            "# TYPE rotor_rotations_total counter",
            "rotor_rotations_total 3",
            "rotor_rotations_failed_total 1",
            "rotor_rotation_in_progress 0",
            "rotor_last_rotation_timestamp_seconds 1790000000.0",
            "rotor_last_rotation_duration_seconds 2.5",
            "rotor_kek_age_seconds 86400.0",
            "rotor_wallets{key_version=\"4\"} 1000",
            "rotor_wallets{key_version=\"legacy\"} 2",
            "rotor_kek_versions{key_version=\"4\",state=\"current\"} 1",
            "rotor_kek_versions{key_version=\"3\",state=\"archived\"} 1",
            "rotor_kek_version_rows{key_version=\"4\",target=\"api_tokens\"} 10",
            "rotor_kek_version_rows{key_version=\"4\",target=\"wallets\"} 990",
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
    }

    /// Every family a full page has, with its type and help text, exactly as rotor has always
    /// exposed them: dashboards and alerts name these.
    const FAMILIES: [(&str, &str, &str); 14] = [
        ("rotor_rotations_total", "counter", "Rotations recorded in rotor's journal, rollbacks included."),
        (
            "rotor_rotations_failed_total",
            "counter",
            "Finished rotations that left wallets behind (they do not open or could not be moved).",
        ),
        (
            "rotor_rotation_in_progress",
            "gauge",
            "1 while a rotation is unfinished (running, or interrupted: `rotor rotate` resumes it).",
        ),
        (
            "rotor_last_rotation_timestamp_seconds",
            "gauge",
            "When the latest finished rotation ended (Unix time).",
        ),
        ("rotor_last_rotation_duration_seconds", "gauge", "How long the latest finished rotation took."),
        ("rotor_kek_version", "gauge", "The current KEK's version in Vault."),
        ("rotor_kek_age_seconds", "gauge", "Age of the current KEK, from Vault's metadata."),
        (
            "rotor_wallets",
            "gauge",
            "Wallets per KEK version their ciphertext names (\"legacy\": the seed's format, no version).",
        ),
        (
            "rotor_kek_versions",
            "gauge",
            "Each KEK version Vault or a row knows of, labelled with its state (staged, current, archived, \
             destroyed, missing): always 1.",
        ),
        (
            "rotor_kek_version_rows",
            "gauge",
            "Rows naming each KEK version, per table under the KEK (rows set aside by rotor quarantine left \
             out): a destroyable version has none.",
        ),
        (
            "rotor_invalid_wallets",
            "gauge",
            "Wallets that did not open at the last check (validate, or a rotation's wallets left behind).",
        ),
        (
            "rotor_last_check_timestamp_seconds",
            "gauge",
            "When rotor_invalid_wallets was measured (Unix time).",
        ),
        (
            "rotor_last_run_exit_code",
            "gauge",
            "Exit code of the last rotor command that wrote these metrics (0 ok, 1 error, 3 wallets left behind).",
        ),
        ("rotor_last_run_timestamp_seconds", "gauge", "When that command ended (Unix time)."),
    ];

    #[test]
    fn the_page_keeps_its_names() {
        let page = snapshot().render();
        let mut expected = String::new();
        for (name, kind, help) in FAMILIES {
            expected += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");
        }
        let announced: String =
            page.lines().filter(|l| l.starts_with('#')).map(|l| format!("{l}\n")).collect();
        assert_eq!(announced, expected, "{page}");
        // Each family has its samples under its own name (prometheus-client's `_total` is not
        // doubled, and gauges get no suffix), and the page is 0.0.4: no OpenMetrics `# EOF`.
        for (name, _, _) in FAMILIES {
            assert!(
                page.lines().any(|l| l.split(['{', ' ']).next() == Some(name)),
                "no {name} sample:\n{page}"
            );
        }
        assert!(!page.contains("_total_total") && !page.contains("# EOF"), "{page}");
        assert_eq!(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
    }

    #[test]
    fn label_values_are_escaped_and_read_back() {
        let odd = "a\"b\\c\nd} 7";
        let snapshot = Snapshot {
            wallets: Some(BTreeMap::from([(odd.to_owned(), 5), ("2".to_owned(), 9)])),
            ..Snapshot::default()
        };
        let page = snapshot.render();
        assert!(page.lines().any(|l| l == r#"rotor_wallets{key_version="a\"b\\c\nd} 7"} 5"#), "{page}");
        assert!(page.lines().any(|l| l == r#"rotor_wallets{key_version="2"} 9"#), "{page}");
        assert_eq!(parse_page(&page).wallets, snapshot.wallets);
    }

    #[test]
    fn unknown_figures_are_left_out() {
        assert_eq!(Snapshot::default().render(), "", "nothing known: an empty page");
        let page = Snapshot {
            last_run: Some((1, 1_790_000_000.25)),
            wallets: Some(BTreeMap::new()),
            ..Snapshot::default()
        }
        .render();
        assert_eq!(
            page,
            "# HELP rotor_last_run_exit_code Exit code of the last rotor command that wrote these metrics (0 ok, 1 error, 3 wallets left behind).\n\
             # TYPE rotor_last_run_exit_code gauge\n\
             rotor_last_run_exit_code 1\n\
             # HELP rotor_last_run_timestamp_seconds When that command ended (Unix time).\n\
             # TYPE rotor_last_run_timestamp_seconds gauge\n\
             rotor_last_run_timestamp_seconds 1790000000.25\n"
        );
        assert_eq!(parse_page(&page), Snapshot::default(), "a failed run's page carries no figures over");
    }

    #[test]
    fn times_keep_millisecond_precision_and_read_back() {
        let mut snapshot = snapshot();
        snapshot.kek = Some((7, 12.345_678_9));
        snapshot.check = Some(WalletCheck { invalid: 0, at: 1_790_000_100.123_456 });
        snapshot.journal.as_mut().unwrap().in_progress = true;
        let page = snapshot.render();
        for line in [
            "rotor_kek_age_seconds 12.346",
            "rotor_last_check_timestamp_seconds 1790000100.123",
            "rotor_rotation_in_progress 1",
        ] {
            assert!(page.lines().any(|l| l == line), "missing {line:?} in:\n{page}");
        }
        let read = parse_page(&page);
        assert_eq!(read.kek, Some((7, 12.346)));
        assert_eq!(read.check, Some(WalletCheck { invalid: 0, at: 1_790_000_100.123 }));
        assert!(read.journal.unwrap().in_progress);
        // What a command carries over renders the same again (no drift from page to page).
        snapshot.last_run = None;
        assert_eq!(parse_page(&page).render(), snapshot.render());
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
