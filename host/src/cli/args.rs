//! What clap parses: the global flags, the commands and their arguments. `--help` is built
//! from the doc comments here, so they are written for operators.
//!
//! Over 500 lines on purpose: every command's `--help` is a doc comment on one `Command` enum,
//! which clap needs whole; the code itself is a few small conversions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::bindings::types;
use crate::plan::BatchSize;
use crate::rotation::RotateRequest;
use crate::terminal::LogFormat;
use crate::vault::PolicyRole;

const AFTER_HELP: &str = "\
Vault is reached as the Vault CLI does: VAULT_ADDR (default http://127.0.0.1:8200), VAULT_TOKEN
(else ~/.vault-token) or AppRole (VAULT_ROLE_ID and VAULT_SECRET_ID, VAULT_APPROLE_MOUNT default
approle; the token is renewed during long runs), VAULT_NAMESPACE, VAULT_CACERT, VAULT_SKIP_VERIFY
(only when set to true; insecure). The KEK is field `key` (64 hex characters) of
<kv-mount>/<key-path>; rotor keeps every KEK version at <key-path>-archive/v<N>. Without any Vault
credentials, `validate` and `open` read the seed's WALLET_ENCRYPTION_KEY (read-only, with a
warning); nothing else does. `rotor policy` prints the Vault policies for a runner, an auditor
and an application that only reads KEKs.

Exit codes:
  0  success (also a rotation skipped by --if-older-than)
  1  error: nothing was left half-done; the message says what to fix
  2  bad usage
  3  finished, but some wallets do not open or could not be moved (listed by id)
  130, 143  stopped by SIGINT or SIGTERM: a rotation gives its key ranges back and `rotor rotate`
            resumes it";

/// Rotates the key-encryption key (KEK) of AES-256-GCM wallets kept in SQL, with the KEK in
/// Vault KV v2. All crypto runs inside a sandboxed WebAssembly component.
#[derive(Debug, Parser)]
#[command(name = "rotor", version, after_help = AFTER_HELP, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    /// Flags every subcommand accepts.
    pub global: GlobalArgs,
    #[command(subcommand)]
    /// The subcommand to run.
    pub command: Command,
}

#[derive(Clone, Debug, Args)]
/// Flags every subcommand accepts (`global = true`): where the wallets, the KEK and the component
/// are, and how rotor reports.
pub struct GlobalArgs {
    /// Settings file [default: rotor.toml in the working directory, if there is one]. Flags
    /// and environment variables override what it sets; `rotor config check` shows the result.
    #[arg(long, env = "ROTOR_CONFIG", hide_env_values = true, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Lay the settings of [profile.NAME] in the settings file over the rest (dev, staging,
    /// prod, …: each with its own database, key path, schedule and limits).
    #[arg(long, env = "ROTOR_PROFILE", global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// Database with the wallet table: sqlite://PATH or postgres://USER@HOST/DB
    /// [default: sqlite://rotor.db].
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Table that holds the wallets [default: wallets].
    #[arg(long, global = true, value_name = "NAME")]
    pub table: Option<String>,
    /// Column with the wallet id (text, unique) [default: id].
    #[arg(long, global = true, value_name = "NAME")]
    pub id_column: Option<String>,
    /// Column with the encrypted wallet (text) [default: ciphertext].
    #[arg(long, global = true, value_name = "NAME")]
    pub ciphertext_column: Option<String>,
    /// The tenant to act on, when rotor.toml gives each tenant its own KEK ([tenants]): its KEK
    /// and its rows alone. `rotor rotate` also takes a list (`acme,globex`) or `all`, and rotates
    /// each in turn.
    #[arg(long, env = "ROTOR_TENANT", global = true, value_name = "NAME")]
    pub tenant: Option<String>,
    /// Mount point of the KV v2 secrets engine [default: secret].
    #[arg(long, env = "ROTOR_KV_MOUNT", hide_env_values = true, global = true, value_name = "MOUNT")]
    pub kv_mount: Option<String>,
    /// Path of the KEK within the mount [default: ibn/encryption-key].
    #[arg(long, env = "ROTOR_KEY_PATH", hide_env_values = true, global = true, value_name = "PATH")]
    pub key_path: Option<String>,
    /// Run this component instead of the built-in one (for `audit`: this audit component). It
    /// must be pinned in rotor.toml unless --allow-unpinned is given.
    #[arg(long, env = "ROTOR_COMPONENT", hide_env_values = true, global = true, value_name = "PATH")]
    pub component: Option<PathBuf>,
    /// Run a component file whose digest is not pinned in rotor.toml (logged as a warning).
    #[arg(long, global = true)]
    pub allow_unpinned: bool,
    /// No longer has any effect (the host checks every write itself); accepted so that
    /// existing scripts keep working.
    #[arg(long, global = true, hide = true)]
    pub no_cross_check: bool,
    /// Have the rotor-plugin secrets engine mounted at MOUNT in OpenBao run validate, rotate,
    /// status or history (docs/PLUGIN.md): its rotor/config names the database and its KEK never
    /// leaves OpenBao. VAULT_ADDR and the token are read as for Vault KV.
    #[arg(long, env = "ROTOR_VIA_PLUGIN", global = true, value_name = "MOUNT")]
    pub via_plugin: Option<String>,
    /// Print exactly one JSON document on stdout (errors too: {"error": "..."}).
    #[arg(long, global = true)]
    pub json: bool,
    /// More logging (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Errors only; no progress bar.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log lines on stderr as text, or as JSON objects (one per line) for a log collector.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "ROTOR_LOG_FORMAT", hide_env_values = true, global = true)]
    pub log_format: LogFormat,
    /// After validate, rotate, rollback, prune or status, write Prometheus metrics to PATH,
    /// atomically (for node-exporter's textfile collector: a *.prom file in its directory).
    #[arg(long, env = "ROTOR_METRICS_FILE", hide_env_values = true, global = true, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
/// rotor's subcommands.
pub enum Command {
    /// Open every wallet with the KEK it names; count wallets per KEK version, list those that fail.
    ///
    /// Legacy wallets name no KEK version: rotor tries the current KEK, then archived ones.
    /// Exits 3 if any wallet does not open.
    Validate(ValidateArgs),
    /// Move every wallet to a new KEK.
    ///
    /// A new 256-bit KEK from a CSPRNG is stored in Vault (check-and-set) and archived before any
    /// wallet is written under it; the old KEK stays readable in the archive. Wallets move in
    /// atomic batches, each row only if nobody changed it meanwhile; legacy wallets are converted
    /// to rotor's envelope format (or, with --output-format legacy, every wallet stays in the seed's
    /// layout). If a rotation was interrupted, `rotor rotate` finishes it (whatever
    /// --if-older-than says); `rotor abort` closes it instead.
    ///
    /// With --stage, nothing moves yet: the next KEK is stored where applications' keyrings
    /// read it, and `rotor promote` later makes it current and moves the wallets. While a KEK
    /// is staged, `rotor rotate` without --stage is refused.
    Rotate(RotateCommand),
    /// Make the staged KEK current and move every wallet to it (`rotor rotate --stage` first).
    ///
    /// The second step of a staged roll-out: the staged key becomes the next KV version of the
    /// key path, so writers seal under it from now on, and the wallets move as in `rotor
    /// rotate`. Applications that loaded their keys after the KEK was staged open every wallet
    /// throughout. An interrupted promotion is finished by `rotor promote` or `rotor rotate`.
    Promote(RotateArgs),
    /// Discard the staged KEK without promoting it.
    ///
    /// Safe at any time: nothing seals under a staged KEK, so no wallet can need it. Refused while
    /// a rotation is unfinished (it may be the promotion).
    Unstage,
    /// Move every wallet back to the previous KEK, as a normal rotation (no database restore).
    ///
    /// The previous KEK (by default the one the last rotation moved away from) becomes current
    /// again as a new KV version holding the same key, and every wallet is re-wrapped to it.
    Rollback(RollbackArgs),
    /// Close the unfinished rotation without finishing it.
    ///
    /// For a rotation that cannot or should not be finished (say, a rollback to a KEK that was
    /// destroyed). Its wallets stay on whichever KEK they are, all of which Vault keeps; the next
    /// `rotor rotate` starts a new rotation. Refuses while another rotor is still moving its
    /// wallets, or if a KEK its wallets name is missing from Vault. Nothing is written to Vault.
    Abort,
    /// Destroy archived KEKs that no wallet uses any more, keeping the newest N versions.
    ///
    /// A version still used by some wallet is not destroyed (its count is shown; exit 3). Rows
    /// are counted in every table a rotation of this KEK moved, not only the one named here.
    /// Nothing is destroyed while legacy wallets exist or a rotation is unfinished. What is
    /// destroyed gets a receipt (versions, fingerprints, zero row counts, who, when), printed and
    /// stored in Vault at <key-path>-receipts/; `rotor keys` shows what there is beforehand.
    Prune {
        /// How many of the newest KEK versions to keep whatever their use (at least 1: the current).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        keep: u32,
        /// Destroy nothing: list what a prune would destroy now, each version having passed
        /// every check made before destroying it, with its fingerprint; exit 3 if some version
        /// would be kept because rows use it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Destroy one KEK version, e.g. after it leaked and `rotor rotate --reencrypt` moved every
    /// row off it (or use `rotor rotate --compromised vN`, which does both).
    ///
    /// Refused, destroying nothing, while it is the current KEK, a rotation is unfinished, or any
    /// row of any table under the KEK names it (or names no version); the message says which.
    /// Leaves the same receipt as prune.
    Destroy {
        /// The version to destroy: `v3` or `3`.
        #[arg(value_parser = parse_version)]
        version: u32,
        /// Destroy nothing: make every check and show the fingerprint of what would go.
        #[arg(long)]
        dry_run: bool,
    },
    /// Set aside the rows that open under no KEK Vault holds, so that they stop blocking prune
    /// and destroy.
    ///
    /// Tries every row of every table under the KEK that does not name the current version (a
    /// rotation moves those that open). A row that opens under no key, such as a damaged
    /// ciphertext or one copied from another row, is recorded with its exact ciphertext in
    /// rotor's own table `rotor_quarantine`: prune and destroy stop counting it while it holds
    /// that ciphertext, and a receipt lists it. The row itself is never changed or deleted.
    Quarantine {
        /// Record nothing: list the rows that would be set aside, and why each does not open.
        #[arg(long, conflicts_with_all = ["list", "release"])]
        dry_run: bool,
        /// List the rows set aside under this KEK, and whether each still holds what was recorded.
        #[arg(long, conflicts_with = "release")]
        list: bool,
        /// Count row ID again: prune and destroy wait for it once more.
        #[arg(long, value_name = "ID")]
        release: Option<String>,
    },
    /// The unfinished rotation if there is one (progress, who runs it), and wallets per KEK
    /// version as the database counts them (no key is read).
    Status,
    /// Past rotations: rotor's journal, and archives left by the seed's script; then the
    /// history chained in Vault (<key-path>-history/), checked link by link and against the
    /// journal. An entry edited in Vault, or a journal row edited in the database, is reported
    /// as a break (exit 1).
    History,
    /// Every version of the KEK: staged, current, archived, destroyed (or missing: rows name a
    /// key Vault does not have), when and by which rotation it was made, its fingerprint, and the rows of
    /// each table that name it, counted by the database.
    ///
    /// The tables counted are the one these settings name and every table a rotation of this
    /// KEK moved. A fingerprint names a key without revealing it: the same key, the same
    /// fingerprint. Check here that no row names a version before destroying it.
    Keys,
    /// Encrypt a wallet under the current KEK and store it (plaintext on stdin).
    Seal {
        /// Wallet id; an existing wallet with this id is replaced.
        id: String,
    },
    /// Decrypt a wallet and write its exact plaintext bytes to stdout.
    Open {
        /// Wallet id.
        id: String,
    },
    /// Store a KEK kept in an environment variable as the first KEK in Vault (the seed's Day 2).
    ///
    /// Refuses to overwrite a different KEK already in Vault; does nothing if the same one is there.
    MigrateKek {
        /// Environment variable holding the KEK as 64 hex characters.
        #[arg(long, value_name = "VAR")]
        from_env: String,
    },
    /// Read-only checks by an audit component: wallets per KEK version, legacy rows, rows that do
    /// not open, KEK age, archive and journal consistency.
    ///
    /// Runs rotor's own audit component, or a third party's with --component. Audit components
    /// target the `auditor` world, which has no function that writes: they cannot change a
    /// secret, a wallet or the journal. Exits 3 if the audit found errors.
    Audit(BatchArgs),
    /// Inspect component files.
    #[command(subcommand)]
    Component(ComponentCommand),
    /// Check rotor.toml.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a least-privilege Vault policy for this configuration's KV mount and key path.
    ///
    /// Each path comes with a comment saying why it is granted. Install it with
    /// `rotor policy runner | bao policy write rotor-runner -`. Before rotate, rollback and prune
    /// change anything, rotor checks that its token holds what the runner policy grants.
    Policy {
        /// runner: rotate, rollback, prune, migrate-kek, seal and every read; auditor: validate,
        /// status, history, open, audit, serve; app: an application's @rotor/codec Keyring.
        #[arg(value_enum)]
        role: PolicyArg,
    },
    /// A Prometheus exporter: serves GET /metrics until stopped (SIGTERM or Ctrl-C).
    ///
    /// Refreshes the rotation journal, wallets per KEK version and the KEK's age every
    /// --interval, and opens every wallet (read-only) every --validate-every for the count of
    /// invalid wallets.
    Serve(ServeArgs),
    /// The whole job on the embedded default: start an OpenBao dev server, enroll legacy wallets
    /// in a SQLite file, validate, rotate, validate again, stop the server.
    Demo(crate::demo::DemoArgs),
    /// Measure rotor against the database's own rewrite rate, a native build of its crypto
    /// core and OpenBao Transit, in one run; print a table (and with --out, Markdown, JSON and
    /// a PNG chart).
    ///
    /// Starts an OpenBao dev server, and creates SQLite files and a PostgreSQL database (on
    /// --postgres-url), removed afterwards. 1,000,000 wallets take about twenty minutes on 2
    /// cores; --quick (100,000) about four; `--wallets 2000` is a smoke check.
    ///
    /// `rotor bench --help` describes the options. The bench is a binary of its own,
    /// rotor-bench, which `rotor bench` runs from rotor's folder so that rotor carries none of its
    /// code: build it with `cargo build --release -p rotor-bench` (`cargo build --release
    /// --workspace` builds both).
    #[command(
        disable_help_flag = true,
        override_usage = "rotor bench [--wallets N,…] [--quick] [--out DIR] [--postgres-url URL] \
                          [--workers N] [--batch-size N] [--json] [-v]"
    )]
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
/// `rotor component`'s subcommands.
pub enum ComponentCommand {
    /// Print a component's sha256 (what `pinned` in rotor.toml lists), the world it targets, its
    /// imports and exports. Fails if it imports anything outside its world's grants.
    Inspect {
        /// The component file (.wasm).
        path: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
/// `rotor config`'s subcommands.
pub enum ConfigCommand {
    /// Read rotor.toml, environment and flags, and print the effective settings and where each
    /// came from, secrets redacted. Fails on unknown keys and invalid values.
    Check,
}

#[derive(Debug, Args)]
/// `rotor serve`'s flags.
pub struct ServeArgs {
    /// Address to serve /metrics on.
    #[arg(long, default_value = "127.0.0.1:9464", value_name = "HOST:PORT")]
    pub metrics_addr: std::net::SocketAddr,
    /// How often to refresh the journal, wallet counts and KEK age.
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub interval: humantime::Duration,
    /// How often to open every wallet for rotor_invalid_wallets (0s: never).
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    pub validate_every: humantime::Duration,
    #[command(flatten)]
    /// The batch size of the periodic validation.
    pub batch: BatchArgs,
}

#[derive(Clone, Debug, Args)]
/// `--batch-size`, shared by the commands that walk the wallet table.
pub struct BatchArgs {
    /// Wallets per batch (per transaction and per call into the component). Larger batches
    /// cost memory (each worker holds several at once) without going faster: see BENCHMARKS.md.
    #[arg(long, default_value_t = BatchSize::DEFAULT, value_name = "N")]
    pub batch_size: BatchSize,
}

#[derive(Debug, Args)]
/// `rotor validate`'s flags.
pub struct ValidateArgs {
    #[command(flatten)]
    /// Wallets per batch.
    pub batch: BatchArgs,
    /// Instances of the component opening wallets at once [default: the number of cores].
    #[arg(long, value_name = "N")]
    pub workers: Option<std::num::NonZeroUsize>,
}

#[derive(Clone, Debug, Args)]
/// The flags of `rotor rotate` and `rotor rollback`: how the rotation runs.
pub struct RotateArgs {
    #[command(flatten)]
    /// Wallets per batch.
    pub batch: BatchArgs,
    /// Open and re-seal every wallet under a throwaway KEK; store nothing, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also replace each wallet's data key (a full re-encryption), not only re-wrap it.
    #[arg(long)]
    pub reencrypt: bool,
    /// Finish the interrupted rotation; fails if there is none.
    #[arg(long, conflicts_with = "dry_run")]
    pub resume: bool,
    /// Check first that every wallet opens; if one does not, change nothing (exit 1).
    #[arg(long)]
    pub strict: bool,
    /// What the wallets are written in. `legacy` is for applications that cannot read rotor's
    /// envelope yet: every wallet is re-encrypted in the seed's layout, which names no KEK
    /// version and binds no wallet id (docs/ROTATION.md says what that gives up). A resumed
    /// rotation keeps the format it began with.
    #[arg(long, value_enum, default_value_t = OutputFormat::Envelope, value_name = "FORMAT")]
    pub output_format: OutputFormat,
    /// Instances of the component moving wallets at once, each on its own key ranges [default:
    /// the number of cores]. Other `rotor rotate` processes started meanwhile, here or on other
    /// machines, join the same rotation and share its ranges.
    #[arg(long, value_name = "N")]
    pub workers: Option<std::num::NonZeroUsize>,
    /// How long this rotor's hold on the rotation lasts without progress. Another rotor may take
    /// over after that (at once if this one died on the same host).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..=86_400), value_name = "SECONDS")]
    pub lease_seconds: u64,
}

impl RotateArgs {
    /// What these flags ask of a rotation.
    pub fn request(&self) -> RotateRequest {
        RotateRequest {
            dry_run: self.dry_run,
            reencrypt: self.reencrypt,
            resume: self.resume,
            strict: self.strict,
            output_format: self.output_format.into(),
        }
    }

    /// What these flags say of the run plan.
    pub(super) fn plan(&self) -> PlanFlags {
        PlanFlags {
            batch_size: Some(self.batch.batch_size),
            workers: self.workers,
            lease_ttl: Some(std::time::Duration::from_secs(self.lease_seconds)),
        }
    }
}

/// `rotor rotate`: a rotation, and when to skip it.
#[derive(Clone, Debug, Args)]
pub struct RotateCommand {
    #[command(flatten)]
    /// How the rotation runs.
    pub rotate: RotateArgs,
    /// Rotate only if the current KEK is older than this (as written in Vault), e.g. 90d or
    /// 12h; otherwise say so and exit 0. For a daily cron job or Kubernetes CronJob. An
    /// unfinished rotation is resumed whatever the KEK's age.
    #[arg(long, value_name = "AGE")]
    pub if_older_than: Option<humantime::Duration>,
    /// As --if-older-than, with the age the settings file gives (`rotate-after` under
    /// [schedule], or under the profile's own [profile.NAME.schedule]).
    #[arg(long, conflicts_with = "if_older_than")]
    pub scheduled: bool,
    /// KEK version VN leaked: rotate with fresh data keys for every row (--reencrypt), then
    /// destroy vN once no row names it, with a receipt. If some row could not be moved, vN is
    /// kept and the command says so (exit 3).
    #[arg(
        long,
        value_name = "VN",
        value_parser = parse_version,
        conflicts_with_all = ["if_older_than", "scheduled", "dry_run"]
    )]
    pub compromised: Option<u32>,
    /// Store the next KEK as staged and move nothing: readers (`rotor open`, the @rotor/codec
    /// Keyring) accept it, writers keep sealing under the current KEK until `rotor promote`.
    /// With --if-older-than or --scheduled, stages only when the current KEK is that old; if a
    /// KEK is staged already, says so and changes nothing.
    #[arg(long, conflicts_with_all = ["dry_run", "resume", "reencrypt", "strict", "compromised"])]
    pub stage: bool,
    /// First store a new version of the root KEK that tenants' KEKs are derived from ([tenants]
    /// derive-from); this rotation and every later one, of any tenant, derives from it. With
    /// `--tenant all`, one new root version, then every tenant moves under it: what to run
    /// when the root may have leaked (add --reencrypt), before pruning the old tenant versions.
    #[arg(long, conflicts_with_all = ["dry_run", "resume", "if_older_than", "scheduled"])]
    pub new_root: bool,
}

/// A KEK version as an operator writes it: `v3` or `3` (at least 1).
fn parse_version(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix('v').unwrap_or(text);
    match digits.parse::<u32>() {
        Ok(version) if version > 0 => Ok(version),
        _ => Err(format!("{text:?} is not a KEK version: write it as v3 or 3")),
    }
}

/// Whom `rotor policy` writes a policy for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyArg {
    /// rotate, rollback, prune, migrate-kek, seal and every read-only command.
    Runner,
    /// validate, status, history, open, audit and serve: reads only.
    Auditor,
    /// An application reading KEKs with @rotor/codec's Keyring: the KEK and its archive, read only.
    App,
}

impl From<PolicyArg> for PolicyRole {
    fn from(role: PolicyArg) -> Self {
        match role {
            PolicyArg::Runner => PolicyRole::Runner,
            PolicyArg::Auditor => PolicyRole::Auditor,
            PolicyArg::App => PolicyRole::App,
        }
    }
}

/// The wallet format a rotation writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// rotor's envelope, `rotor:v<K>:…`: names its KEK version, binds the wallet id.
    Envelope,
    /// the seed's `base64(iv ‖ tag ‖ ciphertext)` under the KEK, which the seed's application reads.
    Legacy,
}

impl From<OutputFormat> for types::OutputFormat {
    fn from(format: OutputFormat) -> Self {
        match format {
            OutputFormat::Envelope => types::OutputFormat::Envelope,
            OutputFormat::Legacy => types::OutputFormat::Legacy,
        }
    }
}

#[derive(Debug, Args)]
/// `rotor rollback`'s flags.
pub struct RollbackArgs {
    /// The KEK version to go back to (default: the one the last rotation moved away from).
    #[arg(long, value_name = "VERSION", value_parser = clap::value_parser!(u32).range(1..))]
    pub to: Option<u32>,
    #[command(flatten)]
    /// How the rollback's rotation runs.
    pub rotate: RotateArgs,
}

/// What a command's flags say of its [`RunPlan`]; `None` takes the default.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct PlanFlags {
    pub(super) batch_size: Option<BatchSize>,
    pub(super) workers: Option<std::num::NonZeroUsize>,
    pub(super) lease_ttl: Option<std::time::Duration>,
}

impl PlanFlags {
    pub(super) fn batch(batch: &BatchArgs) -> PlanFlags {
        PlanFlags { batch_size: Some(batch.batch_size), ..PlanFlags::default() }
    }
}
