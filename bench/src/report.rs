//! The bench's figures, and what they say against rotor's targets: a Markdown table, JSON and
//! a chart.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::chart::{Series, render_png};

/// What was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Setup {
    /// The first `rotor rotate`, from the seed's legacy layout: every wallet opened and sealed
    /// in rotor's envelope.
    RotateLegacy,
    /// `rotor rotate`: the data keys re-wrapped, in the component.
    Rotate,
    /// `rotor rotate --reencrypt`: every wallet opened and sealed afresh, in the component.
    RotateReencrypt,
    /// The same walk with the crypto core compiled natively.
    NativeRotate,
    NativeReencrypt,
    /// The database alone: the legacy rows read and written back, no crypto.
    RawRewriteLegacy,
    /// The database alone: the same rows read and written back, no crypto.
    RawRewrite,
    /// One instance opening and resealing every wallet without writing, times the workers.
    ReencryptCeiling,
    /// `rotor validate`.
    Validate,
    /// Every row read and opened natively, as the plainest program would.
    NativeOpen,
    /// OpenBao Transit rewrapping as many wallet-size ciphertexts, 499 per request.
    TransitRewrap,
    /// The same with 32-byte data keys.
    TransitRewrapDataKeys,
    /// `rotor rotate` (re-wrap) on the rows the plugin then rotates.
    RotateBesidePlugin,
    /// `rotor/rotate` inside OpenBao (`rotor-plugin`), re-wrapping the same rows.
    PluginRotate,
}

impl Setup {
    fn label(self) -> &'static str {
        match self {
            Setup::RotateLegacy => "rotor rotate, first (from legacy)",
            Setup::Rotate => "rotor rotate (re-wrap)",
            Setup::RotateReencrypt => "rotor rotate --reencrypt",
            Setup::NativeRotate => "native baseline, re-wrap",
            Setup::NativeReencrypt => "native baseline, --reencrypt",
            Setup::RawRewriteLegacy => "raw rewrite of legacy rows",
            Setup::RawRewrite => "raw rewrite (no crypto)",
            Setup::ReencryptCeiling => "sandbox ceiling (--reencrypt, no writes)",
            Setup::Validate => "rotor validate",
            Setup::NativeOpen => "native read-and-open",
            Setup::TransitRewrap => "OpenBao Transit rewrap, wallets",
            Setup::TransitRewrapDataKeys => "OpenBao Transit rewrap, data keys",
            Setup::RotateBesidePlugin => "rotor rotate (re-wrap), CLI beside the plugin",
            Setup::PluginRotate => "rotor/rotate in the OpenBao plugin",
        }
    }
}

/// One figure.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measurement {
    pub setup: Setup,
    /// SQLite, PostgreSQL or OpenBao.
    pub store: String,
    /// Wallets in the database (or ciphertexts in Transit).
    pub size: u64,
    /// Wallets (or ciphertexts) handled.
    pub handled: u64,
    pub seconds: f64,
    pub per_second: f64,
    /// Peak resident memory of the rotor process that did it, where it ran as its own process.
    pub peak_rss_mib: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Startup {
    /// `rotor validate` on a 10-wallet SQLite database, component cached: fastest of five.
    pub command_ms: f64,
    /// One Vault KV read from this process: fastest of five.
    pub vault_read_ms: f64,
    /// Vault requests the command makes.
    pub vault_reads: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
}

impl Machine {
    fn this() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|line| line.strip_prefix("model name").and_then(|rest| rest.split(':').nth(1)))
            .map_or_else(|| "unknown".into(), |name| name.trim().to_owned());
        let memory_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: memory_kib / 1024.0 / 1024.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        }
    }
}

/// What a ratio must be to meet its target.
#[derive(Clone, Copy, Debug)]
enum Bound {
    AtLeast(f64),
    AtMost(f64),
    /// No target: reported for comparison.
    Reported,
}

impl Bound {
    fn met(self, value: f64) -> Option<bool> {
        match self {
            Bound::AtLeast(bound) => Some(value >= bound),
            Bound::AtMost(bound) => Some(value <= bound),
            Bound::Reported => None,
        }
    }
}

/// A target, and what this run measured against it.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub target: String,
    pub measured: String,
    /// `None` for a figure reported for comparison, with no target.
    pub met: Option<bool>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchReport {
    pub command: String,
    pub date: String,
    pub rotor_version: String,
    pub machine: Machine,
    pub workers: usize,
    pub batch_size: u32,
    pub sizes: Vec<u64>,
    pub startup: Option<Startup>,
    pub measurements: Vec<Measurement>,
}

impl BenchReport {
    pub fn new(command: String, workers: usize, batch_size: u32, sizes: Vec<u64>) -> BenchReport {
        BenchReport {
            command,
            date: crate::store::now_rfc3339(),
            rotor_version: env!("CARGO_PKG_VERSION").into(),
            machine: Machine::this(),
            workers,
            batch_size,
            sizes,
            startup: None,
            measurements: Vec::new(),
        }
    }

    /// Adds a figure and says it on stderr at once: a long run shows where it is.
    pub fn record(
        &mut self,
        setup: Setup,
        store: &str,
        size: u64,
        handled: u64,
        took: Duration,
        peak_rss_bytes: Option<u64>,
    ) {
        let seconds = took.as_secs_f64().max(1e-6);
        let measurement = Measurement {
            setup,
            store: store.to_owned(),
            size,
            handled,
            seconds,
            per_second: handled as f64 / seconds,
            peak_rss_mib: peak_rss_bytes.map(|bytes| bytes as f64 / (1024.0 * 1024.0)),
        };
        let rss = measurement.peak_rss_mib.map_or_else(String::new, |mib| format!(", peak RSS {mib:.1} MiB"));
        eprintln!(
            "bench: N={size} {store:<10} {:<32} {:>10}/s ({handled} in {seconds:.2} s{rss})",
            setup.label(),
            thousands(measurement.per_second)
        );
        self.measurements.push(measurement);
    }

    fn rate(&self, setup: Setup, store: &str, size: u64) -> Option<f64> {
        self.find(setup, store, size).map(|m| m.per_second)
    }

    fn find(&self, setup: Setup, store: &str, size: u64) -> Option<&Measurement> {
        self.measurements.iter().find(|m| m.setup == setup && m.store == store && m.size == size)
    }

    /// The targets (issue 17's), judged at the largest size measured.
    pub fn verdicts(&self) -> Vec<Verdict> {
        let Some(&n) = self.sizes.iter().max() else { return Vec::new() };
        let mut verdicts = Vec::new();
        // `numerator / denominator` of two rates, met when `met` holds of it (None: reported).
        let transit = self.rate(Setup::TransitRewrap, "OpenBao", n);
        let transit_keys = self.rate(Setup::TransitRewrapDataKeys, "OpenBao", n);
        let ceiling = self.rate(Setup::ReencryptCeiling, "SQLite", n);
        for store in ["SQLite", "PostgreSQL"] {
            use Bound::{AtLeast, AtMost, Reported};
            use Setup::*;
            let r = |setup| self.rate(setup, store, n);
            // (what, numerator, denominator, bound on their ratio). The component's time over the
            // native one is the native rate over the component's.
            let targets = [
                (
                    "first rotation from legacy >= 0.5x raw rewrite of the legacy rows",
                    r(RotateLegacy),
                    r(RawRewriteLegacy),
                    AtLeast(0.5),
                ),
                ("re-wrap >= 0.8x raw rewrite", r(Rotate), r(RawRewrite), AtLeast(0.8)),
                ("validate >= 0.8x native read-and-open", r(Validate), r(NativeOpen), AtLeast(0.8)),
                ("re-wrap >= 3x OpenBao Transit rewrap of wallets", r(Rotate), transit, AtLeast(3.0)),
                (
                    "rotation through the OpenBao plugin >= 0.8x the CLI's, same rows",
                    r(PluginRotate),
                    r(RotateBesidePlugin),
                    AtLeast(0.8),
                ),
                ("re-wrap in the component <= 1.1x the native time", r(NativeRotate), r(Rotate), AtMost(1.1)),
                ("re-wrap vs OpenBao Transit rewrap of 32-byte data keys", r(Rotate), transit_keys, Reported),
                ("--reencrypt vs raw rewrite", r(RotateReencrypt), r(RawRewrite), Reported),
                ("--reencrypt vs the sandbox ceiling", r(RotateReencrypt), ceiling, Reported),
                (
                    "--reencrypt in the component vs the native time",
                    r(NativeReencrypt),
                    r(RotateReencrypt),
                    Reported,
                ),
            ];
            for (what, numerator, denominator, bound) in targets {
                let (Some(numerator), Some(denominator)) = (numerator, denominator) else { continue };
                let value = numerator / denominator;
                verdicts.push(Verdict {
                    target: format!("{what}, {store}"),
                    // Three decimals where a bound is close: 1.104 must not read as 1.10, "missed".
                    measured: format!("{value:.3}x"),
                    met: bound.met(value),
                });
            }
        }
        let peaks: Vec<(u64, f64)> = self
            .sizes
            .iter()
            .filter_map(|&size| {
                let peak = self
                    .measurements
                    .iter()
                    // The plugin is a server, not a command: its figure is reported apart.
                    .filter(|m| m.size == size && m.setup != Setup::PluginRotate)
                    .filter_map(|m| m.peak_rss_mib)
                    .fold(None, |max: Option<f64>, mib| Some(max.map_or(mib, |m| m.max(mib))));
                peak.map(|peak| (size, peak))
            })
            .collect();
        if let Some(&(_, largest)) = peaks.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
            let shown: Vec<String> = peaks
                .iter()
                .map(|(size, mib)| format!("{mib:.1} MiB at {}", thousands(*size as f64)))
                .collect();
            verdicts.push(Verdict {
                target: "peak RSS <= 64 MiB for every command".into(),
                measured: shown.join(", "),
                met: Some(largest <= 64.0),
            });
        }
        let plugin_peaks: Vec<String> = self
            .measurements
            .iter()
            .filter(|m| m.setup == Setup::PluginRotate)
            .filter_map(|m| {
                Some(format!("{:.1} MiB ({}, {})", m.peak_rss_mib?, m.store, thousands(m.size as f64)))
            })
            .collect();
        if !plugin_peaks.is_empty() {
            verdicts.push(Verdict {
                target: "peak RSS of the OpenBao plugin's process (it compiles its component itself)".into(),
                measured: plugin_peaks.join(", "),
                met: None,
            });
        }
        if let Some(startup) = &self.startup {
            let allowed = 50.0 + f64::from(startup.vault_reads) * startup.vault_read_ms;
            verdicts.push(Verdict {
                target: "a command on 10 wallets starts in <= 50 ms + its Vault round trips".into(),
                measured: format!(
                    "{:.1} ms (allowed {allowed:.1} ms: {} Vault read(s) of {:.1} ms)",
                    startup.command_ms, startup.vault_reads, startup.vault_read_ms
                ),
                met: Some(startup.command_ms <= allowed),
            });
        }
        verdicts
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(
            md,
            "Machine: {}, {} cores, {:.1} GiB RAM, Linux {}.  ",
            m.cpu, m.cores, m.memory_gib, m.kernel
        );
        let _ = writeln!(
            md,
            "rotor {}, {} workers, batches of {}; run at {}.  \nCommand: `{}`\n",
            self.rotor_version, self.workers, self.batch_size, self.date, self.command
        );
        let sizes: Vec<String> = self.sizes.iter().map(|&n| format!("N = {}", thousands(n as f64))).collect();
        let _ = writeln!(md, "Wallets (or ciphertexts) per second:\n");
        let _ = writeln!(md, "| setup | store | {} |", sizes.join(" | "));
        let _ = writeln!(md, "|---|---|{}", "---:|".repeat(self.sizes.len()));
        for (setup, store) in self.rows() {
            let cells: Vec<String> = self
                .sizes
                .iter()
                .map(|&n| self.rate(setup, &store, n).map_or_else(|| "–".into(), thousands))
                .collect();
            let _ = writeln!(md, "| {} | {store} | {} |", setup.label(), cells.join(" | "));
        }
        let _ = writeln!(md, "\nPeak RSS of the rotor process (MiB):\n");
        let _ = writeln!(md, "| command | store | {} |", sizes.join(" | "));
        let _ = writeln!(md, "|---|---|{}", "---:|".repeat(self.sizes.len()));
        for (setup, store) in self.rows() {
            let cells: Vec<Option<f64>> = self
                .sizes
                .iter()
                .map(|&n| self.find(setup, &store, n).and_then(|m| m.peak_rss_mib))
                .collect();
            if cells.iter().any(Option::is_some) {
                let shown: Vec<String> =
                    cells.iter().map(|c| c.map_or_else(|| "–".into(), |mib| format!("{mib:.1}"))).collect();
                let _ = writeln!(md, "| {} | {store} | {} |", setup.label(), shown.join(" | "));
            }
        }
        let largest = self.sizes.iter().max().copied().unwrap_or_default();
        let _ = writeln!(md, "\nTargets, at N = {}:\n", thousands(largest as f64));
        let _ = writeln!(md, "| target | measured | |");
        let _ = writeln!(md, "|---|---|---|");
        for verdict in self.verdicts() {
            let mark = match verdict.met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "reported",
            };
            let _ = writeln!(md, "| {} | {} | {mark} |", verdict.target, verdict.measured);
        }
        md
    }

    /// Every (setup, store) measured, in a fixed order.
    fn rows(&self) -> Vec<(Setup, String)> {
        let mut rows: Vec<(Setup, String)> = Vec::new();
        for m in &self.measurements {
            if !rows.iter().any(|(setup, store)| *setup == m.setup && *store == m.store) {
                rows.push((m.setup, m.store.clone()));
            }
        }
        rows.sort_by_key(|(setup, store)| (*setup as u8, store.clone()));
        rows
    }

    /// The report a run wrote into `dir` (its bench.json), to draw its table and chart again.
    pub fn read(dir: &Path) -> anyhow::Result<BenchReport> {
        let path = dir.join("bench.json");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut json: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
        serde_json::from_value(json["report"].take()).with_context(|| {
            format!("{} holds no bench report (its \"report\" field) this rotor-bench reads", path.display())
        })
    }

    /// Writes bench.md, bench.json and bench.png into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let md = dir.join("bench.md");
        std::fs::write(&md, format!("{}\n![throughput against N](bench.png)\n", self.markdown()))
            .with_context(|| format!("writing {}", md.display()))?;
        let json = serde_json::json!({ "report": self, "targets": self.verdicts() });
        let path = dir.join("bench.json");
        std::fs::write(&path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
        let series: Vec<Series> = self
            .rows()
            .into_iter()
            .map(|(setup, store)| Series {
                name: format!("{} ({store})", setup.label()),
                points: self
                    .measurements
                    .iter()
                    .filter(|m| m.setup == setup && m.store == store)
                    .map(|m| (m.size, m.per_second))
                    .collect(),
            })
            .collect();
        render_png(&dir.join("bench.png"), "rotor bench: throughput against the number of wallets", &series)
    }
}

/// 12345.6 as "12,346".
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> BenchReport {
        let mut report = BenchReport::new("rotor bench".into(), 2, 1000, vec![1000]);
        let second = Duration::from_secs(1);
        report.record(Setup::RotateLegacy, "SQLite", 1000, 20_000, second, Some(40 << 20));
        report.record(Setup::RawRewriteLegacy, "SQLite", 1000, 50_000, second, None);
        report.record(Setup::Validate, "SQLite", 1000, 90_000, second, Some(20 << 20));
        report.record(Setup::NativeOpen, "SQLite", 1000, 100_000, second, None);
        report.record(Setup::Rotate, "SQLite", 1000, 40_000, second, Some(30 << 20));
        report.record(Setup::RawRewrite, "SQLite", 1000, 50_000, second, None);
        report.record(Setup::NativeRotate, "SQLite", 1000, 60_000, second, None);
        report.record(Setup::TransitRewrap, "OpenBao", 1000, 10_000, second, None);
        report
    }

    #[test]
    fn verdicts_compare_against_the_targets() {
        let verdicts = report().verdicts();
        let find = |prefix: &str| verdicts.iter().find(|v| v.target.starts_with(prefix)).unwrap().clone();
        let raw = find("re-wrap >= 0.8x raw rewrite, SQLite");
        assert_eq!((raw.measured.as_str(), raw.met), ("0.800x", Some(true)));
        let transit = find("re-wrap >= 3x OpenBao Transit rewrap of wallets");
        assert_eq!((transit.measured.as_str(), transit.met), ("4.000x", Some(true)));
        let native = find("re-wrap in the component");
        assert_eq!((native.measured.as_str(), native.met), ("1.500x", Some(false)));
        let legacy = find("first rotation from legacy >= 0.5x raw rewrite of the legacy rows, SQLite");
        assert_eq!((legacy.measured.as_str(), legacy.met), ("0.400x", Some(false)));
        let validate = find("validate >= 0.8x native read-and-open, SQLite");
        assert_eq!((validate.measured.as_str(), validate.met), ("0.900x", Some(true)));
        let rss = find("peak RSS");
        assert!(rss.met == Some(true) && rss.measured.contains("40.0 MiB"), "{rss:?}");
    }

    #[test]
    fn markdown_has_a_row_per_setup() {
        let md = report().markdown();
        assert!(md.contains("| rotor rotate (re-wrap) | SQLite | 40,000 |"), "{md}");
        assert!(md.contains("| OpenBao Transit rewrap, wallets | OpenBao | 10,000 |"), "{md}");
        assert!(md.contains("**missed**"), "{md}");
    }

    /// `--redraw`: what a run wrote reads back as the same report, so the table drawn again is
    /// the one the run printed; a folder without a report says so.
    #[test]
    fn a_written_report_reads_back_the_same() {
        let dir = std::env::temp_dir().join(format!("rotor-bench-redraw-{}", std::process::id()));
        let written = report();
        written.write(&dir).unwrap();
        let read = BenchReport::read(&dir).unwrap();
        assert_eq!(read.markdown(), written.markdown());
        assert_eq!(read.measurements.len(), written.measurements.len());
        std::fs::write(dir.join("bench.json"), "{\"targets\": []}").unwrap();
        let error = format!("{:#}", BenchReport::read(&dir).unwrap_err());
        assert!(error.contains("bench.json holds no bench report"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
        let error = format!("{:#}", BenchReport::read(&dir).unwrap_err());
        assert!(error.contains("reading") && error.contains("bench.json"), "{error}");
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(0.0), "0");
    }
}
