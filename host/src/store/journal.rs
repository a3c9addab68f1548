//! rotor's journal of rotations (`rotor_rotations`), as records.

use std::fmt;

use serde::Serialize;

use super::{StoreError, WalletTable};

/// One rotation as rotor's journal keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RotationRecord {
    /// The journal's id for the rotation, increasing.
    pub id: i64,
    /// The KEK version the wallets were on when it started (0: the seed's legacy format).
    pub from_version: i64,
    /// The KEK version it moves the wallets to; 0 until the new KEK is recorded.
    pub to_version: i64,
    /// Running (or interrupted), or how it ended.
    #[sqlx(try_from = "String")]
    pub status: RotationStatus,
    /// When it started, as recorded in the journal.
    pub started_at: String,
    /// When it ended; `None` while it runs.
    pub finished_at: Option<String>,
    /// `user@host (pid N)` of the rotor that began it.
    pub started_by: String,
    /// Wallets in the table when it started.
    pub total: i64,
    /// Wallets moved to `to_version` so far.
    pub rotated: i64,
    /// Wallets that could not be moved; they stay on their old KEK.
    pub failed: i64,
    /// Each wallet's data key is replaced too, not only re-wrapped.
    pub reencrypt: bool,
    /// `envelope` or `legacy`: what the rotation writes.
    pub output_format: String,
    /// For a rollback: the earlier KEK version made current again.
    pub restores: Option<i64>,
    /// Hex sha256 of the component that began it.
    pub component_sha256: String,
    /// Whom Vault knew the token of the rotor that began it as (see
    /// [`RunIdentity::vault_identity`]); `None` when unknown or recorded before 0.2.
    pub vault_identity: Option<String>,
    /// `mount/path` of the KEK it rotated; `None` if recorded before 0.3, which kept no scope.
    pub key_path: Option<String>,
    /// The tables it moved, as [`Scope::targets_text`] spells them; `None` before 0.3.
    pub targets: Option<String>,
}

impl RotationRecord {
    /// Whether this rotation rotated `scope`'s KEK. One recorded before 0.3 names no KEK and
    /// counts as everyone's, as it did then.
    pub fn rotated_kek_of(&self, scope: &Scope) -> bool {
        self.key_path.as_ref().is_none_or(|key_path| *key_path == scope.key_path)
    }

    /// Whether a run with `scope` may act on this rotation: same KEK, same tables.
    pub fn belongs_to(&self, scope: &Scope) -> bool {
        self.rotated_kek_of(scope)
            && self.targets.as_ref().is_none_or(|targets| *targets == scope.targets_text())
    }

    /// The tables it moved, as recorded (none before 0.3). A recorded name that is no longer a
    /// valid identifier is skipped: no query could name it.
    pub fn target_tables(&self) -> Vec<WalletTable> {
        self.targets.as_deref().map(Scope::parse_targets).unwrap_or_default()
    }

    /// "table `wallets` under KEK secret/ibn/encryption-key", for messages.
    pub fn describe_scope(&self) -> String {
        match (&self.key_path, &self.targets) {
            (Some(key_path), Some(targets)) => {
                format!("{} under KEK {key_path}", describe_tables(&Scope::parse_targets(targets)))
            }
            _ => "settings rotor 0.2 or earlier did not record".into(),
        }
    }
}

#[cfg(test)]
impl RotationRecord {
    /// A finished rotation of three wallets from v1 to v2, recorded before scopes, for tests.
    pub(crate) fn example(id: i64) -> RotationRecord {
        RotationRecord {
            id,
            from_version: 1,
            to_version: 2,
            status: RotationStatus::Finished,
            started_at: "2026-12-04T10:00:00Z".into(),
            finished_at: Some("2026-12-04T10:00:05Z".into()),
            started_by: "rotor@host (pid 7)".into(),
            total: 3,
            rotated: 3,
            failed: 0,
            reencrypt: false,
            output_format: "envelope".into(),
            restores: None,
            component_sha256: "ab".repeat(32),
            vault_identity: Some("approle rotor-runner".into()),
            key_path: None,
            targets: None,
        }
    }
}

/// What a run acts on: one KEK (its KV mount and path) and the tables whose rows it protects.
/// Rotations are recorded with their scope, and no command acts on another scope's rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// `mount/path` of the KEK in Vault, e.g. `secret/ibn/encryption-key`.
    pub key_path: String,
    /// The tables this run moves, in the order given.
    pub targets: Vec<WalletTable>,
}

impl Scope {
    /// The KEK at `path` in the KV v2 engine mounted at `mount`, protecting `targets`.
    pub fn new(mount: &str, path: &str, targets: Vec<WalletTable>) -> Scope {
        let key_path = format!("{}/{}", mount.trim_matches('/'), path.trim_matches('/'));
        Scope { key_path, targets }
    }

    /// The default KEK (`secret/ibn/encryption-key`, the seed's) protecting `table`.
    pub fn default_for(table: WalletTable) -> Scope {
        Scope::new("secret", "ibn/encryption-key", vec![table])
    }

    /// The targets as the journal records them: `table:id_column:ciphertext_column`, then
    /// `:column=tenant` for one tenant's rows, `:where.column=value` for a target's filter and
    /// `:format.legacy` (or `.envelope`) for a target written in a layout of its own,
    /// comma separated. Identifiers, tenant names and filter values hold none of `:`, `,`, `=`
    /// and (identifiers) `.` (see [`WalletTable::new`], `for_tenant`, `with_filter`).
    pub fn targets_text(&self) -> String {
        let spelled: Vec<String> = self
            .targets
            .iter()
            .map(|t| {
                let tenant =
                    t.tenant.as_ref().map(|r| format!(":{}={}", r.column, r.tenant)).unwrap_or_default();
                let filter =
                    t.filter.as_ref().map(|f| format!(":where.{}={}", f.column, f.value)).unwrap_or_default();
                let format = t.format.map(|f| format!(":format.{}", f.as_str())).unwrap_or_default();
                format!("{}:{}:{}{tenant}{filter}{format}", t.table, t.id_column, t.ciphertext_column)
            })
            .collect();
        spelled.join(",")
    }

    fn parse_targets(text: &str) -> Vec<WalletTable> {
        text.split(',')
            .filter_map(|spelled| {
                let mut names = spelled.split(':');
                let (table, id, ciphertext) = (names.next()?, names.next()?, names.next()?);
                let mut parsed = WalletTable::new(table, id, ciphertext).ok()?;
                for limit in names {
                    if let Some(format) = limit.strip_prefix("format.") {
                        parsed = parsed.with_format(super::TargetFormat::parse(format)?);
                        continue;
                    }
                    let (column, value) = limit.split_once('=')?;
                    parsed = match column.strip_prefix("where.") {
                        Some(column) => parsed.with_filter(column, value).ok()?,
                        None => parsed.for_tenant(column, value).ok()?,
                    };
                }
                Some(parsed)
            })
            .collect()
    }

    /// "table `wallets` under KEK secret/ibn/encryption-key", for messages.
    pub fn describe(&self) -> String {
        format!("{} under KEK {}", describe_tables(&self.targets), self.key_path)
    }
}

/// "table `wallets`" or "tables `wallets`, `jwt_keys`".
fn describe_tables(tables: &[WalletTable]) -> String {
    let names: Vec<String> = tables
        .iter()
        .map(|t| {
            let filter =
                t.filter.as_ref().map(|f| format!(" where {} = {}", f.column, f.value)).unwrap_or_default();
            match &t.tenant {
                Some(rows) => format!("`{}`{filter} (tenant {})", t.table, rows.tenant),
                None => format!("`{}`{filter}", t.table),
            }
        })
        .collect();
    format!("table{} {}", if names.len() == 1 { "" } else { "s" }, names.join(", "))
}

/// What the journal records of a rotation as it begins (with the run's [`Scope`]).
#[derive(Clone, Copy, Debug)]
pub struct NewRotation<'a> {
    /// The KEK version the wallets are on (0: the seed's legacy format).
    pub from_version: i64,
    /// Wallets in the table.
    pub total: i64,
    /// Whether each wallet's data key is replaced too.
    pub reencrypt: bool,
    /// `envelope` or `legacy`: what the rotation writes.
    pub output_format: &'a str,
    /// For a rollback: the earlier KEK version it makes current again.
    pub restores: Option<i64>,
}

/// Where a rotation stands, as the journal's `status` column spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RotationStatus {
    /// Moving wallets, or interrupted: `rotor rotate` finishes it.
    Running,
    /// Every wallet it could move was moved.
    Finished,
    /// Closed by `rotor abort` before it finished: its wallets stay on whichever KEK they were.
    Aborted,
}

impl RotationStatus {
    /// The journal's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RotationStatus::Running => "running",
            RotationStatus::Finished => "finished",
            RotationStatus::Aborted => "aborted",
        }
    }

    /// Reads the journal's spelling; anything else is a journal rotor did not write.
    pub fn parse(status: &str) -> Result<RotationStatus, StoreError> {
        [RotationStatus::Running, RotationStatus::Finished, RotationStatus::Aborted]
            .into_iter()
            .find(|s| s.as_str() == status)
            .ok_or_else(|| {
                StoreError::Config(format!(
                    "rotor_rotations holds a rotation with status {status:?}, which this rotor does not know \
                     (running, finished or aborted): was it written by a newer rotor?"
                ))
            })
    }
}

impl TryFrom<String> for RotationStatus {
    type Error = StoreError;

    fn try_from(status: String) -> Result<RotationStatus, StoreError> {
        RotationStatus::parse(&status)
    }
}

impl fmt::Display for RotationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a new rotation may not begin: `running` is unfinished, in this scope or another.
pub(super) fn unfinished(running: RotationRecord, scope: &Scope) -> StoreError {
    if !running.belongs_to(scope) {
        return foreign(running, scope);
    }
    StoreError::RotationUnfinished {
        id: running.id,
        from_version: running.from_version,
        started_by: running.started_by,
        started_at: running.started_at,
    }
}

/// Why a run may not act on `running`: it was begun for another KEK or other tables.
pub(super) fn foreign(running: RotationRecord, scope: &Scope) -> StoreError {
    StoreError::OtherScope {
        id: running.id,
        theirs: running.describe_scope(),
        ours: scope.describe(),
        started_by: running.started_by,
    }
}

/// `2026-11-30T07:34:44Z`: sortable as text, the same in both databases.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key_path: Option<&str>, targets: Option<&str>) -> RotationRecord {
        RotationRecord {
            key_path: key_path.map(Into::into),
            targets: targets.map(Into::into),
            ..RotationRecord::example(7)
        }
    }

    #[test]
    fn a_scope_is_recorded_and_read_back() {
        let tokens = WalletTable::new("api_tokens", "token_id", "sealed").unwrap();
        let scope =
            Scope::new("secret/", "/ibn/encryption-key", vec![WalletTable::default(), tokens.clone()]);
        assert_eq!(scope.key_path, "secret/ibn/encryption-key");
        assert_eq!(scope.targets_text(), "wallets:id:ciphertext,api_tokens:token_id:sealed");
        let recorded = record(Some(&scope.key_path), Some(&scope.targets_text()));
        assert_eq!(recorded.target_tables(), vec![WalletTable::default(), tokens]);
        assert!(recorded.belongs_to(&scope));
        assert_eq!(
            recorded.describe_scope(),
            "tables `wallets`, `api_tokens` under KEK secret/ibn/encryption-key"
        );
    }

    #[test]
    fn another_kek_or_other_tables_are_another_scope() {
        let wallets = Scope::default_for(WalletTable::default());
        let tokens = Scope::default_for(WalletTable::new("api_tokens", "id", "ciphertext").unwrap());
        let other_kek = Scope::new("secret", "ibn/other-key", vec![WalletTable::default()]);
        let recorded = record(Some(&wallets.key_path), Some(&wallets.targets_text()));
        assert!(recorded.belongs_to(&wallets));
        // Same KEK, other tables: its history, not its rotation to resume.
        assert!(recorded.rotated_kek_of(&tokens) && !recorded.belongs_to(&tokens));
        assert!(!recorded.rotated_kek_of(&other_kek) && !recorded.belongs_to(&other_kek));
        let StoreError::OtherScope { id, theirs, ours, .. } = unfinished(recorded, &tokens) else {
            panic!("another scope's rotation is not this one's to resume");
        };
        assert_eq!(id, 7);
        assert_eq!(theirs, "table `wallets` under KEK secret/ibn/encryption-key");
        assert_eq!(ours, "table `api_tokens` under KEK secret/ibn/encryption-key");
    }

    #[test]
    fn a_filtered_target_is_recorded_with_its_filter() {
        let tokens =
            WalletTable::new("secrets", "id", "sealed").unwrap().with_filter("kind", "api-token").unwrap();
        let acme = tokens.clone().for_tenant("org", "acme").unwrap();
        let scope =
            Scope::new("secret", "ibn/acme/encryption-key", vec![acme.clone(), WalletTable::default()]);
        assert_eq!(
            scope.targets_text(),
            "secrets:id:sealed:org=acme:where.kind=api-token,wallets:id:ciphertext"
        );
        let recorded = record(Some(&scope.key_path), Some(&scope.targets_text()));
        assert_eq!(recorded.target_tables(), vec![acme, WalletTable::default()]);
        assert!(recorded.belongs_to(&scope));
        let unfiltered =
            Scope::new("secret", "ibn/acme/encryption-key", vec![tokens, WalletTable::default()]);
        assert!(!recorded.belongs_to(&unfiltered), "a filtered target is not the whole table");
        assert!(
            recorded.describe_scope().starts_with("tables `secrets` where kind = api-token (tenant acme)")
        );
        let legacy = WalletTable::default().with_format(super::super::TargetFormat::Legacy);
        let legacy = Scope::new("secret", "ibn/k", vec![legacy]);
        assert_eq!(legacy.targets_text(), "wallets:id:ciphertext:format.legacy");
        let recorded = record(Some(&legacy.key_path), Some(&legacy.targets_text()));
        let envelope = Scope::new("secret", "ibn/k", vec![WalletTable::default()]);
        assert!(recorded.belongs_to(&legacy) && !recorded.belongs_to(&envelope));
    }

    #[test]
    fn a_tenants_rows_are_recorded_as_theirs() {
        let acme = WalletTable::default().for_tenant("tenant", "acme").unwrap();
        let scope = Scope::new("secret", "ibn/acme/encryption-key", vec![acme.clone()]);
        assert_eq!(scope.targets_text(), "wallets:id:ciphertext:tenant=acme");
        let recorded = record(Some(&scope.key_path), Some(&scope.targets_text()));
        assert_eq!(recorded.target_tables(), vec![acme]);
        assert!(recorded.belongs_to(&scope));
        let everyone = Scope::new("secret", "ibn/acme/encryption-key", vec![WalletTable::default()]);
        assert!(!recorded.belongs_to(&everyone), "a tenant's rotation is not the whole table's");
        assert_eq!(
            recorded.describe_scope(),
            "table `wallets` (tenant acme) under KEK secret/ibn/acme/encryption-key"
        );
        // A recorded filter that could not have been written is dropped, never queried.
        let odd = record(Some(&scope.key_path), Some("wallets:id:ciphertext:tenant"));
        assert!(odd.target_tables().is_empty());
    }

    #[test]
    fn rotations_recorded_before_scopes_are_everyones() {
        let old = record(None, None);
        for scope in [
            Scope::default_for(WalletTable::default()),
            Scope::new("kv", "other", vec![WalletTable::new("t", "i", "c").unwrap()]),
        ] {
            assert!(old.belongs_to(&scope) && old.rotated_kek_of(&scope));
        }
        assert!(old.target_tables().is_empty());
        assert!(matches!(
            unfinished(old, &Scope::default_for(WalletTable::default())),
            StoreError::RotationUnfinished { .. }
        ));
    }
}
