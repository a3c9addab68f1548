//! `rotor.toml`: settings an operator keeps in a file, below environment variables and flags in
//! precedence (flag > environment > file > default), and `rotor config check`.
//!
//! One file can describe several environments: a `[profile.NAME]` table holds any of the
//! file's sections, and `--profile NAME` (or `ROTOR_PROFILE`) lays its keys over the rest.
//!
//! Over 500 lines on purpose: each section's type sits beside the checks serde cannot express
//! (targets, tenants, durations, digests), which must run for every profile, and their tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::limits::Limits;

/// The file's name in the working directory, read when no `--config` / `ROTOR_CONFIG` is given.
pub const DEFAULT_FILE: &str = "rotor.toml";

/// Everything `rotor.toml` may hold. Unknown keys are errors, so a typo does not silently
/// fall back to a default.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    /// `[database]`: where the wallets are.
    pub database: DatabaseSection,
    /// `[vault]`: where the KEK is.
    pub vault: VaultSection,
    /// `[component]`: which crypto core runs, and its compile cache.
    pub component: ComponentSection,
    /// `[limits]`: what one component run may consume.
    pub limits: Limits,
    /// `[schedule]`: how old a KEK may grow before `rotor rotate --scheduled` replaces it.
    pub schedule: ScheduleSection,
    /// `[[target]]`: every table the KEK protects, when there is more than `[database]`'s one.
    /// One rotation moves them all to the same new KEK version.
    pub target: Vec<TargetSection>,
    /// `[tenants]`: a KEK per tenant, each protecting that tenant's rows of every target.
    pub tenants: TenantsSection,
}

/// `[tenants]`: one KEK per tenant. `--tenant NAME` (or `ROTOR_TENANT`) picks the tenant a
/// command acts on: its KEK (the key-path template with `{tenant}` replaced) and its rows (those
/// whose tenant column holds its name, in every target).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct TenantsSection {
    /// The KEK's path inside the KV mount, `{tenant}` standing for the tenant's name, e.g.
    /// `ibn/{tenant}/encryption-key`.
    pub key_path: Option<String>,
    /// The column that names each row's tenant, in every target that does not name its own
    /// (`tenant-column` under `[[target]]`).
    pub column: Option<String>,
    /// Every tenant: what `rotor rotate --tenant all` rotates, and the only names `--tenant`
    /// accepts (a misspelt tenant would otherwise get a KEK of its own).
    pub list: Vec<String>,
    /// The root KEK's path, if each tenant's KEK versions are derived from it (HKDF-SHA256, the
    /// tenant's name as context) rather than stored: the key path then holds each version's
    /// derivation record, and Vault one root key for every tenant.
    pub derive_from: Option<String>,
}

impl TenantsSection {
    /// Whether rotor.toml gives tenants their own KEKs.
    pub fn configured(&self) -> bool {
        self.key_path.is_some() || self.column.is_some() || !self.list.is_empty()
    }

    /// `targets`: rotor.toml's `[[target]]` list, whose `tenant-column`s stand in for `column`.
    fn check(&self, targets: &[TargetSection]) -> anyhow::Result<()> {
        if !self.configured() {
            if let Some(target) = targets.iter().find(|t| t.tenant_column.is_some()) {
                bail!(
                    "[[target]] {:?} names a `tenant-column`, but there is no [tenants] section to say whose \
                     KEK each tenant has: add [tenants] (key-path, list), or remove tenant-column",
                    target.table
                );
            }
            return Ok(());
        }
        match &self.key_path {
            Some(template) if template.matches("{tenant}").count() == 1 => {}
            _ => bail!(
                "[tenants] needs `key-path`, the KEK's path with `{{tenant}}` standing for the tenant's name \
                 once, e.g. \"ibn/{{tenant}}/encryption-key\""
            ),
        }
        let every_target_names_one = !targets.is_empty() && targets.iter().all(|t| t.tenant_column.is_some());
        match &self.column {
            Some(column) => {
                crate::store::WalletTable::default().for_tenant(column, "t").context("[tenants] column")?;
            }
            None if every_target_names_one => {}
            None => bail!(
                "[tenants] needs `column`: the column that names each row's tenant (or a `tenant-column` in \
                 every [[target]])"
            ),
        }
        for target in targets {
            if let Some(column) = &target.tenant_column {
                crate::store::WalletTable::default()
                    .for_tenant(column, "t")
                    .with_context(|| format!("[[target]] {:?} tenant-column", target.table))?;
            }
        }
        if self.list.is_empty() {
            bail!("[tenants] needs `list`: every tenant's name, e.g. list = [\"acme\", \"globex\"]");
        }
        let mut seen = std::collections::HashSet::new();
        if let (Some(root), Some(template)) = (&self.derive_from, &self.key_path) {
            let root = root.trim_matches('/');
            if root.is_empty()
                || root.contains("{tenant}")
                || self.list.iter().any(|t| template.replace("{tenant}", t) == root)
            {
                bail!(
                    "[tenants] derive-from names the root KEK every tenant's KEK is derived from: one path, \
                     not a template and not a tenant's own key path, e.g. \"ibn/tenant-root-kek\""
                );
            }
        }
        for tenant in &self.list {
            crate::store::check_tenant_name(tenant).context("[tenants] list")?;
            if tenant == "all" || !seen.insert(tenant) {
                bail!("[tenants] list holds {tenant:?} twice or uses the reserved name `all`");
            }
        }
        Ok(())
    }

    /// The KEK path of `tenant`.
    pub fn key_path_of(&self, tenant: &str) -> Option<String> {
        self.key_path.as_ref().map(|template| template.replace("{tenant}", tenant))
    }
}

/// `[[target]]`: one table whose rows the KEK protects, and its columns.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TargetSection {
    /// The table's name.
    pub table: String,
    /// Its key column, the order rotation walks in (default `id`). Each row's value is bound
    /// into its ciphertext, so it must be the id the application seals with.
    #[serde(default = "default_id_column")]
    pub id_column: String,
    /// Its ciphertext column (default `ciphertext`).
    #[serde(default = "default_ciphertext_column")]
    pub ciphertext_column: String,
    /// With `[tenants]`: the column naming each row's tenant in this table, where it is not
    /// `[tenants] column` (an application's tables seldom agree on one name).
    pub tenant_column: Option<String>,
    /// Only the rows whose column holds a value, e.g. `filter = { column = "kind", equals =
    /// "api-token" }`: a table shared with rows this KEK does not protect.
    pub filter: Option<FilterSection>,
    /// The layout this table's application reads, `envelope` or `legacy` (the seed's), when it
    /// is not the one `--output-format` gives every other target.
    pub format: Option<crate::store::TargetFormat>,
}

/// A `[[target]]`'s `filter`: the rows it covers are those whose `column` equals `equals`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSection {
    /// The column compared.
    pub column: String,
    /// The value it must hold (letters, digits, `_`, `-`, `.`).
    pub equals: String,
}

fn default_id_column() -> String {
    "id".into()
}

fn default_ciphertext_column() -> String {
    "ciphertext".into()
}

impl TargetSection {
    /// The table as rotor reads it; an identifier that is not plain SQL is an error.
    pub fn wallet_table(&self) -> anyhow::Result<crate::store::WalletTable> {
        let table = crate::store::WalletTable::new(&self.table, &self.id_column, &self.ciphertext_column);
        let table = match (table, &self.filter) {
            (Ok(table), Some(filter)) => table.with_filter(&filter.column, &filter.equals),
            (table, _) => table,
        };
        let table = match self.format {
            Some(format) => table.map(|t| t.with_format(format)),
            None => table,
        };
        table.with_context(|| format!("[[target]] table {:?}", self.table))
    }
}

/// `[schedule]`: when a scheduled rotation is due.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScheduleSection {
    /// `rotor rotate --scheduled` rotates once the current KEK is older than this, as
    /// humantime reads it ("90d", "12h"); each profile may set its own.
    pub rotate_after: Option<String>,
}

impl ScheduleSection {
    /// `rotate-after` as a duration; `None` if unset.
    pub fn rotate_after(&self) -> Result<Option<Duration>, String> {
        self.rotate_after
            .as_deref()
            .map(|text| {
                humantime::parse_duration(text).map_err(|e| {
                    format!("schedule.rotate-after is {text:?}, which is not a duration like \"90d\" or \"12h\": {e}")
                })
            })
            .transpose()
    }
}

/// `[database]`: the wallet store and the table and columns the wallets are in.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DatabaseSection {
    /// sqlite://PATH or postgres://USER@HOST/DB. A URL with a password is better kept in the
    /// DATABASE_URL environment variable than in a file.
    pub url: Option<String>,
    /// Name of the wallet table.
    pub table: Option<String>,
    /// Column holding each wallet's key, the order rotation walks in.
    pub id_column: Option<String>,
    /// Column holding each wallet's AES-256-GCM ciphertext.
    pub ciphertext_column: Option<String>,
}

/// `[vault]`: where the KEK lives; the environment overrides each key.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct VaultSection {
    /// Mount point of the KV v2 engine.
    pub mount: Option<String>,
    /// Path of the KEK within the mount.
    pub key_path: Option<String>,
    /// Vault's address, namespace and CA file, used where VAULT_ADDR, VAULT_NAMESPACE and
    /// VAULT_CACERT are unset. Credentials never belong here: they come from the environment
    /// (VAULT_TOKEN, ~/.vault-token, AppRole), as for the Vault CLI.
    pub addr: Option<String>,
    /// Vault Enterprise namespace (see `addr`).
    pub namespace: Option<String>,
    /// PEM file of the CA that signs Vault's certificate (see `addr`).
    pub ca_cert: Option<PathBuf>,
    /// How long to retry a request while Vault is unreachable or answers 429/5xx (an HA
    /// fail-over, a load balancer's 502), as humantime reads it ("60s", "2m"); default 60 s.
    /// ROTOR_VAULT_RETRY_FOR takes precedence.
    pub retry_for: Option<String>,
}

impl VaultSection {
    /// Fills in what the environment left unset (the environment takes precedence).
    pub fn fill_in(&self, config: &mut crate::vault::VaultConfig) {
        let unset = |var: &str| std::env::var_os(var).is_none_or(|value| value.is_empty());
        if let Some(addr) = self.addr.as_ref().filter(|_| unset("VAULT_ADDR")) {
            config.addr = addr.clone();
        }
        if let Some(namespace) = self.namespace.as_ref().filter(|_| unset("VAULT_NAMESPACE")) {
            config.namespace = Some(namespace.clone());
        }
        if let Some(ca_cert) = self.ca_cert.as_ref().filter(|_| unset("VAULT_CACERT")) {
            config.ca_cert = Some(ca_cert.clone());
        }
        // Checked by `parse`, so a value here is valid.
        if let Some(Ok(retry_for)) = self
            .retry_for
            .as_ref()
            .filter(|_| unset(crate::vault::RETRY_FOR_VAR))
            .map(|text| self.parse_retry_for(text))
        {
            config.retry_for = retry_for;
        }
    }

    fn parse_retry_for(&self, text: &str) -> Result<std::time::Duration, String> {
        crate::vault::parse_retry_for("vault.retry-for", text)
    }
}

/// `[component]`: which crypto core runs, which files may, and where compiled ones are cached.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ComponentSection {
    /// A component file to run instead of the built-in one.
    pub path: Option<PathBuf>,
    /// sha256 digests (hex) of the component files allowed to run. The built-in components are
    /// always allowed: the rotor binary is their pin.
    pub pinned: Vec<String>,
    /// Run unpinned component files too (as --allow-unpinned does). Meant for development.
    pub allow_unpinned: bool,
    /// No longer has any effect: the host checks every write of every component itself.
    /// Still parsed, so that existing files load (`false` logs a warning).
    pub cross_check: bool,
    /// Where compiled components are cached; `cache = false` turns the cache off.
    pub cache_dir: Option<PathBuf>,
    /// Whether to cache compiled components at all (default true).
    pub cache: bool,
}

impl Default for ComponentSection {
    fn default() -> Self {
        ComponentSection {
            path: None,
            pinned: Vec::new(),
            allow_unpinned: false,
            cross_check: true,
            cache_dir: None,
            cache: true,
        }
    }
}

/// Where the settings came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The settings, defaults where the file said nothing.
    pub file: ConfigFile,
    /// The file read, if any.
    pub path: Option<PathBuf>,
    /// The profile whose settings were laid over the file's, if one was chosen.
    pub profile: Option<String>,
}

impl Loaded {
    /// Reads `explicit` (from --config / ROTOR_CONFIG), which must exist, or else `rotor.toml`
    /// in the working directory if there is one, with `profile`'s settings over the rest.
    pub fn load(explicit: Option<&Path>, profile: Option<&str>) -> anyhow::Result<Loaded> {
        let path = match explicit {
            Some(path) => {
                anyhow::ensure!(
                    path.is_file(),
                    "config file {} does not exist (given by --config or ROTOR_CONFIG)",
                    path.display()
                );
                path.to_owned()
            }
            None if Path::new(DEFAULT_FILE).is_file() => PathBuf::from(DEFAULT_FILE),
            None => {
                if let Some(profile) = profile {
                    bail!(
                        "profile `{profile}` was asked for (--profile or ROTOR_PROFILE), but there is no \
                         config file: no --config, no ROTOR_CONFIG and no {DEFAULT_FILE} here"
                    );
                }
                return Ok(Loaded { file: ConfigFile::default(), path: None, profile: None });
            }
        };
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let file = parse_profile(&text, profile)
            .with_context(|| format!("config file {} is not valid", path.display()))?;
        Ok(Loaded { file, path: Some(path), profile: profile.map(str::to_owned) })
    }
}

/// Parses and checks a config file's text, without a profile.
pub fn parse(text: &str) -> anyhow::Result<ConfigFile> {
    parse_profile(text, None)
}

/// Parses and checks a config file's text with `profile`'s keys laid over the rest. Every
/// profile is checked, not only the one chosen, so that a typo in `[profile.prod]` is found
/// by a run on dev.
pub fn parse_profile(text: &str, profile: Option<&str>) -> anyhow::Result<ConfigFile> {
    let mut base: toml::Table = text.parse()?;
    let profiles = match base.remove("profile") {
        None => toml::Table::new(),
        Some(toml::Value::Table(profiles)) => profiles,
        Some(_) => bail!("`profile` holds profiles as tables, such as [profile.prod]"),
    };
    let mut chosen = None;
    for (name, settings) in &profiles {
        let toml::Value::Table(settings) = settings else {
            bail!("profile.{name} is not a table: write its settings under [profile.{name}.SECTION]");
        };
        let mut merged = base.clone();
        overlay(&mut merged, settings);
        let file = checked(merged).with_context(|| format!("in [profile.{name}]"))?;
        if Some(name.as_str()) == profile {
            chosen = Some(file);
        }
    }
    match (profile, chosen) {
        // Read from the text itself where it can be: toml's errors then name the line.
        (None, _) if profiles.is_empty() => check(toml::from_str(text)?),
        (None, _) => checked(base),
        (Some(_), Some(file)) => Ok(file),
        (Some(name), None) => {
            let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
            bail!(
                "there is no profile `{name}` (a [profile.{name}] table); the file has: {}",
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            )
        }
    }
}

/// Lays `over`'s keys onto `base`, table by table: a profile's `[profile.prod.vault]` changes
/// only the `[vault]` keys it names.
fn overlay(base: &mut toml::Table, over: &toml::Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(below)), toml::Value::Table(above)) => overlay(below, above),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

fn checked(table: toml::Table) -> anyhow::Result<ConfigFile> {
    check(toml::Value::Table(table).try_into()?)
}

/// The checks serde's types cannot express: ranges, durations, digests.
fn check(file: ConfigFile) -> anyhow::Result<ConfigFile> {
    file.limits.check().map_err(anyhow::Error::msg)?;
    file.schedule.rotate_after().map_err(anyhow::Error::msg)?;
    if let Some(text) = &file.vault.retry_for {
        file.vault.parse_retry_for(text).map_err(anyhow::Error::msg)?;
    }
    if !file.target.is_empty() {
        let database = &file.database;
        if database.table.is_some() || database.id_column.is_some() || database.ciphertext_column.is_some() {
            bail!(
                "[database] names a table or columns and [[target]] lists tables too: keep the tables in \
                 [[target]] only (the first is the one `rotor seal`, `open` and `validate` read)"
            );
        }
        let mut seen = std::collections::HashSet::new();
        for target in &file.target {
            target.wallet_table()?;
            if !seen.insert(target.table.as_str()) {
                bail!("[[target]] lists table {:?} twice: each table is one target", target.table);
            }
        }
    }
    file.tenants.check(&file.target)?;
    if file.tenants.configured() && file.vault.key_path.is_some() {
        bail!(
            "[vault] key-path and [tenants] key-path both name the KEK: with tenants, each has its own \
             (the template under [tenants]); remove [vault] key-path"
        );
    }
    for pin in &file.component.pinned {
        if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            bail!(
                "component.pinned holds {pin:?}, which is not a sha256 digest (64 lowercase hex \
                 characters, as `rotor component inspect PATH` prints)"
            );
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses() {
        let file = parse(
            r#"
            [database]
            url = "postgres://rotor@db/app"
            table = "wallets"

            [vault]
            key-path = "ibn/encryption-key"

            [component]
            path = "/opt/rotor/rotation.wasm"
            pinned = ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]

            [limits]
            cpu-seconds = 600
            memory-mib = 128
            "#,
        )
        .unwrap();
        assert_eq!(file.database.url.as_deref(), Some("postgres://rotor@db/app"));
        assert_eq!(file.limits.cpu_seconds, 600);
        assert_eq!(file.limits.call_seconds, Limits::default().call_seconds);
        assert!(file.component.cross_check && file.component.cache);
    }

    #[test]
    fn typos_and_bad_values_are_named() {
        let error = format!("{:#}", parse("[limits]\ncpu-second = 5\n").unwrap_err());
        assert!(error.contains("cpu-second"), "{error}");
        let error = format!("{:#}", parse("[component]\npinned = [\"abc\"]\n").unwrap_err());
        assert!(error.contains("\"abc\"") && error.contains("sha256"), "{error}");
        let error = format!("{:#}", parse("[limits]\nmemory-mib = 0\n").unwrap_err());
        assert!(error.contains("limits.memory-mib"), "{error}");
        let error = format!("{:#}", parse("[vault]\nretry-for = \"a while\"\n").unwrap_err());
        assert!(error.contains("vault.retry-for") && error.contains("\"a while\""), "{error}");
    }

    const PROFILES: &str = r#"
        [database]
        table = "wallets"

        [vault]
        key-path = "ibn/encryption-key"

        [schedule]
        rotate-after = "90d"

        [profile.dev.vault]
        key-path = "ibn/dev/encryption-key"
        [profile.dev.schedule]
        rotate-after = "30d"

        [profile.prod]
        database.url = "postgres://rotor@prod-db/app"
        limits.cpu-seconds = 900
    "#;

    #[test]
    fn tenants_need_a_template_a_column_and_a_list() {
        let good =
            "[tenants]\nkey-path = \"ibn/{tenant}/kek\"\ncolumn = \"org\"\nlist = [\"acme\", \"globex\"]\n";
        let file = parse(good).unwrap();
        assert_eq!(file.tenants.key_path_of("acme").as_deref(), Some("ibn/acme/kek"));
        let derived = parse(&format!("{good}derive-from = \"ibn/tenant-root\"\n")).unwrap();
        assert_eq!(derived.tenants.derive_from.as_deref(), Some("ibn/tenant-root"));
        for (text, named) in [
            (good.replace("{tenant}", "x"), "`{tenant}`"),
            (good.replace("column = \"org\"\n", ""), "needs `column`"),
            (good.replace("\"globex\"", "\"acme\""), "twice"),
            (good.replace("\"globex\"", "\"all\""), "reserved name `all`"),
            (good.replace("\"globex\"", "\"glo'bex\""), "tenant name"),
            (good.replace("list = [\"acme\", \"globex\"]", "list = []"), "needs `list`"),
            (format!("{good}[vault]\nkey-path = \"ibn/kek\"\n"), "remove [vault] key-path"),
            ("[[target]]\ntable = \"t\"\ntenant-column = \"org\"\n".to_owned(), "no [tenants] section"),
            (format!("{good}[[target]]\ntable = \"t\"\ntenant-column = \"o'rg\"\n"), "tenant-column"),
            (
                good.replace("column = \"org\"\n", "")
                    + "[[target]]\ntable = \"t\"\ntenant-column = \"org\"\n[[target]]\ntable = \"u\"\n",
                "needs `column`",
            ),
            (format!("{good}derive-from = \"ibn/{{tenant}}/root\"\n"), "derive-from"),
            (format!("{good}derive-from = \"ibn/acme/kek\"\n"), "not a tenant's own key path"),
            (format!("{good}derive-from = \"/\"\n"), "derive-from"),
        ] {
            let error = format!("{:#}", parse(&text).unwrap_err());
            assert!(error.contains(named), "{text}: {error}");
        }
    }

    #[test]
    fn a_target_may_cover_only_some_rows() {
        let text =
            "[[target]]\ntable = \"secrets\"\nfilter = { column = \"kind\", equals = \"api-token\" }\n";
        let table = parse(text).unwrap().target[0].wallet_table().unwrap();
        assert_eq!(table.rows_sql(None), "\"kind\" = 'api-token'");
        for (bad, said) in [
            (text.replace("api-token", "a'b"), "filter value"),
            (text.replace("equals", "is"), "unknown field"),
            (text.replace("\"kind\"", "\"ki nd\""), "filter column"),
        ] {
            let error = format!("{:#}", parse(&bad).unwrap_err());
            assert!(error.contains(said), "{bad}: {error}");
        }
    }

    #[test]
    fn each_target_may_name_its_own_tenant_column() {
        let text = "[tenants]\nkey-path = \"ibn/{tenant}/kek\"\nlist = [\"acme\"]\n\
                    [[target]]\ntable = \"wallets\"\ntenant-column = \"org\"\n\
                    [[target]]\ntable = \"jwt_keys\"\ntenant-column = \"tenant_id\"\n";
        let file = parse(text).unwrap();
        let columns: Vec<_> = file.target.iter().map(|t| t.tenant_column.as_deref()).collect();
        assert_eq!(columns, [Some("org"), Some("tenant_id")]);
    }

    #[test]
    fn a_profile_lays_its_keys_over_the_rest() {
        let dev = parse_profile(PROFILES, Some("dev")).unwrap();
        assert_eq!(dev.vault.key_path.as_deref(), Some("ibn/dev/encryption-key"));
        assert_eq!(dev.database.table.as_deref(), Some("wallets"));
        assert_eq!(dev.schedule.rotate_after().unwrap(), Some(Duration::from_secs(30 * 86_400)));
        let prod = parse_profile(PROFILES, Some("prod")).unwrap();
        assert_eq!(prod.vault.key_path.as_deref(), Some("ibn/encryption-key"));
        assert_eq!(prod.database.url.as_deref(), Some("postgres://rotor@prod-db/app"));
        assert_eq!(prod.schedule.rotate_after().unwrap(), Some(Duration::from_secs(90 * 86_400)));
        assert_eq!(prod.limits.cpu_seconds, 900);
        let none = parse(PROFILES).unwrap();
        assert_eq!(none.database.url, None);
        assert_eq!(none.limits.cpu_seconds, Limits::default().cpu_seconds);
    }

    #[test]
    fn profiles_are_checked_and_named() {
        let error = format!("{:#}", parse_profile(PROFILES, Some("staging")).unwrap_err());
        assert!(error.contains("no profile `staging`") && error.contains("dev, prod"), "{error}");
        // A typo in a profile the run does not use is still found.
        let typo = format!("{PROFILES}\n[profile.staging.vault]\nkey-pth = \"x\"\n");
        let error = format!("{:#}", parse_profile(&typo, Some("dev")).unwrap_err());
        assert!(error.contains("[profile.staging]") && error.contains("key-pth"), "{error}");
        let error = format!("{:#}", parse("[schedule]\nrotate-after = \"soon\"\n").unwrap_err());
        assert!(error.contains("schedule.rotate-after") && error.contains("\"soon\""), "{error}");
        let error = format!("{:#}", parse("profile = 3\n").unwrap_err());
        assert!(error.contains("[profile.prod]"), "{error}");
    }

    #[test]
    fn vault_retry_for_fills_in_the_default() {
        let file = parse("[vault]\nretry-for = \"2m\"\n").unwrap();
        let mut config = crate::vault::VaultConfig::with_token("http://127.0.0.1:8200", "t");
        assert_eq!(config.retry_for, crate::vault::DEFAULT_RETRY_FOR);
        // The environment variable, when a test runner sets it, takes precedence.
        if std::env::var_os(crate::vault::RETRY_FOR_VAR).is_none() {
            file.vault.fill_in(&mut config);
            assert_eq!(config.retry_for, std::time::Duration::from_secs(120));
        }
    }
}
