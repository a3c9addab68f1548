//! Queries that read the same on SQLite and PostgreSQL (both take `$n` placeholders, through
//! sqlx, and for a SQLite batch's records through its connection's handle). A macro rather
//! than generic code: sqlx's pool and row types differ per database, and the trait bounds to
//! abstract over them would outweigh the queries themselves.
//!
//! Over 500 lines on purpose: one macro holds every query the two databases share, so that
//! each reads once; splitting it would split the `impl` it expands into.

use super::{Checkpoint, Replacement, StoreError};

/// The journal's columns: every field of a [`RotationRecord`](super::RotationRecord).
pub(super) const ROTATION_COLUMNS: &str = "id, from_version, to_version, status, started_at, \
     finished_at, started_by, total, rotated, failed, reencrypt, output_format, restores, \
     component_sha256, vault_identity, key_path, targets";

/// How a database spells the column types of rotor's tables.
pub(super) struct Dialect {
    /// A 64-bit integer.
    pub int: &'static str,
    /// A small integer: the one-row lease's id and the one-running-rotation flag.
    pub small: &'static str,
    /// An id the database assigns in increasing order, as the primary key.
    pub serial_key: &'static str,
}

/// rotor's tables as `dialect` spells them: one schema for both databases.
pub(super) fn schema(dialect: &Dialect) -> [String; 4] {
    SCHEMA.map(|statement| {
        statement
            .replace("{serial_key}", dialect.serial_key)
            .replace("{small}", dialect.small)
            .replace("{int}", dialect.int)
    })
}

/// rotor's own tables, with `{int}`, `{small}` and `{serial_key}` where the databases spell
/// types differently (see [`Dialect`]).
const SCHEMA: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS rotor_rotations (
        id {serial_key},
        from_version {int} NOT NULL,
        to_version {int} NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'aborted')),
        -- 1 while running, NULL afterwards: the UNIQUE constraint allows one running rotation.
        running {small} UNIQUE CHECK (running = 1),
        started_at TEXT NOT NULL,
        finished_at TEXT,
        started_by TEXT NOT NULL,
        total {int} NOT NULL,
        rotated {int} NOT NULL DEFAULT 0,
        failed {int} NOT NULL DEFAULT 0,
        reencrypt BOOLEAN NOT NULL,
        restores {int},
        component_sha256 TEXT NOT NULL,
        last_id TEXT,
        output_format TEXT NOT NULL DEFAULT 'envelope' CHECK (output_format IN ('envelope', 'legacy')),
        vault_identity TEXT,
        -- The KEK (`mount/path`) and the tables (`table:id:ciphertext`, comma separated) it
        -- moves: no command acts on another scope's rotation. NULL before 0.3.
        key_path TEXT,
        targets TEXT
    )",
    // At most one process sets up or closes a rotation at a time: the holder renews `expires_at`
    // (Unix seconds) with every batch it writes meanwhile; a holder that died on this host, or
    // whose lease ran out, is replaced.
    "CREATE TABLE IF NOT EXISTS rotor_lease (
        id {small} PRIMARY KEY CHECK (id = 1),
        token TEXT NOT NULL,
        holder TEXT NOT NULL,
        host TEXT NOT NULL,
        pid {int} NOT NULL,
        acquired_at TEXT NOT NULL,
        expires_at {int} NOT NULL,
        process_key TEXT
    )",
    // The walk of a running rotation, split into key ranges that workers, in this process or
    // others, claim one at a time; a claim whose holder stops renewing it runs out (`expires_at`,
    // Unix seconds) and passes to the next worker, who goes on after `cursor`.
    "CREATE TABLE IF NOT EXISTS rotor_ranges (
        rotation_id {int} NOT NULL,
        seq {int} NOT NULL,
        after_id TEXT,
        upto_id TEXT,
        cursor TEXT,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'claimed', 'done')),
        token TEXT,
        holder TEXT,
        host TEXT,
        pid {int},
        process_key TEXT,
        expires_at {int},
        rotated {int} NOT NULL DEFAULT 0,
        PRIMARY KEY (rotation_id, seq)
    )",
    // Rows set aside by `rotor quarantine` (see `quarantine.rs`), keyed by KEK, table and id:
    // one KEK's quarantine says nothing about another's (tenants share tables).
    "CREATE TABLE IF NOT EXISTS rotor_quarantine (
        key_path TEXT NOT NULL,
        target_table TEXT NOT NULL,
        row_id TEXT NOT NULL,
        -- What the ciphertext names, as `rotor keys` counts it: a version number or 'legacy'.
        kek_version TEXT NOT NULL,
        ciphertext TEXT NOT NULL,
        reason TEXT NOT NULL,
        quarantined_at TEXT NOT NULL,
        quarantined_by TEXT NOT NULL,
        PRIMARY KEY (key_path, target_table, row_id)
    )",
];

/// Columns added to rotor's tables after they were first released: (table, column, the statement
/// that adds it, the same on both databases). `migrate` adds those that tables made earlier lack.
pub(super) const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    (
        "rotor_rotations",
        "output_format",
        "ALTER TABLE rotor_rotations ADD COLUMN output_format TEXT NOT NULL DEFAULT 'envelope' \
         CHECK (output_format IN ('envelope', 'legacy'))",
    ),
    ("rotor_rotations", "vault_identity", "ALTER TABLE rotor_rotations ADD COLUMN vault_identity TEXT"),
    ("rotor_rotations", "key_path", "ALTER TABLE rotor_rotations ADD COLUMN key_path TEXT"),
    ("rotor_rotations", "targets", "ALTER TABLE rotor_rotations ADD COLUMN targets TEXT"),
    ("rotor_lease", "process_key", "ALTER TABLE rotor_lease ADD COLUMN process_key TEXT"),
    ("rotor_ranges", "process_key", "ALTER TABLE rotor_ranges ADD COLUMN process_key TEXT"),
];

/// Counts a committed batch towards its rotation, in the batch's own transaction.
pub(super) const CHECKPOINT: &str =
    "UPDATE rotor_rotations SET rotated = rotated + $1, last_id = $2 WHERE id = $3";

/// Extends the rotation lease, in each batch's transaction: a process that lost its lease (paused
/// past the expiry while another took over) changes nothing more.
pub(super) const RENEW_LEASE: &str = "UPDATE rotor_lease SET expires_at = $1 WHERE id = 1 AND token = $2";

/// Counts a committed batch of the walk towards its key range and extends the claim, in the
/// batch's own transaction. Each worker updates its own range's row, so concurrent batches do
/// not queue behind one counter.
pub(super) const CHECKPOINT_RANGE: &str = "UPDATE rotor_ranges SET rotated = rotated + $1, cursor = $2, \
     expires_at = $3 WHERE rotation_id = $4 AND seq = $5 AND token = $6 AND state = 'claimed'";

/// A range is claimable while nobody walks it: never claimed, or its holder's claim ran out.
/// Only the ranges of one target (`$11 <= seq < $12`) are claimed. (`$N` parameters are
/// numbered apart: SQLite cannot bind one twice.)
pub(super) fn claim_range_sql(lock: &str) -> String {
    format!(
        "UPDATE rotor_ranges SET state = 'claimed', token = $1, holder = $2, expires_at = $3, host = $8, \
         pid = $9, process_key = $10 WHERE rotation_id = $4 AND (state = 'pending' OR (state = 'claimed' AND expires_at < $5)) \
         AND seq = (SELECT seq FROM rotor_ranges WHERE rotation_id = $6 \
           AND (state = 'pending' OR (state = 'claimed' AND expires_at < $7)) AND seq >= $11 AND seq < $12 \
           ORDER BY seq LIMIT 1 {lock}) \
         RETURNING seq, after_id, upto_id, cursor"
    )
}

/// A rotation of several tables numbers each table's key ranges in a block of its own: range
/// `n` of target `t` is `seq = t * TARGET_SEQ_STRIDE + n`. Rotations of one table, and those
/// planned before targets, keep `seq = n` (target 0), so no column had to be added.
pub(super) const TARGET_SEQ_STRIDE: i64 = 1 << 32;

/// The `seq` numbers of target `target`'s ranges: `[start, end)`.
pub(super) fn target_seqs(target: usize) -> (i64, i64) {
    let start = target as i64 * TARGET_SEQ_STRIDE;
    (start, start + TARGET_SEQ_STRIDE)
}

/// The ranges `(None, b0], (b0, b1], …, (bn, None)` that boundaries b0 < … < bn cut the id
/// space into: every id, including ids inserted later, falls into exactly one.
pub(super) fn ranges(boundaries: &[String]) -> impl Iterator<Item = (Option<&str>, Option<&str>)> {
    let afters = std::iter::once(None).chain(boundaries.iter().map(|b| Some(b.as_str())));
    let uptos = boundaries.iter().map(|b| Some(b.as_str())).chain(std::iter::once(None));
    afters.zip(uptos)
}

/// `true` for the error of a query on a table that does not exist (rotor never ran here).
pub(super) fn is_missing_table(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(e) => {
            e.code().as_deref() == Some("42P01") || e.message().contains("no such table")
        }
        _ => false,
    }
}

/// A value bound to one of rotor's statements, on either database.
#[derive(Clone, Copy, Debug)]
pub(super) enum Value<'a> {
    Int(i64),
    Text(&'a str),
    Null,
}

/// One statement of what a batch records in its own transaction (see [`batch_records`]).
pub(super) struct Record<'a> {
    pub(super) sql: &'static str,
    /// Bound to `$1`, `$2`, … in order.
    pub(super) values: Vec<Value<'a>>,
    /// It renews this process's claim or lease: a count of rows other than one means another
    /// process holds it now, and the batch rolls back (`StoreError::LeaseLost`).
    pub(super) renews: bool,
}

impl Record<'_> {
    /// What it means that its statement changed `changed` rows: a record that renews a hold
    /// changes exactly one, or another process holds it now and the batch must roll back.
    pub(super) fn check(&self, changed: u64) -> Result<(), StoreError> {
        if changed != 1 && self.renews { Err(StoreError::LeaseLost) } else { Ok(()) }
    }
}

/// What a batch of `replaced` rows (of `rows`) records in its own transaction, in order: the
/// count towards its key range with the range's cursor and claim renewed, or, outside the
/// walk, the lease renewed and the count towards the rotation. Each store runs these through
/// its own driver, so that both keep one set of rules.
pub(super) fn batch_records<'a>(
    checkpoint: Option<Checkpoint<'a>>,
    replaced: usize,
    rows: &'a [Replacement],
) -> Vec<Record<'a>> {
    let counted = Value::Int(replaced as i64);
    match checkpoint {
        Some(Checkpoint::Range { rotation, seq, token, cursor, expires_at }) => vec![Record {
            sql: CHECKPOINT_RANGE,
            values: vec![
                counted,
                Value::Text(cursor),
                Value::Int(expires_at),
                Value::Int(rotation),
                Value::Int(seq),
                Value::Text(token),
            ],
            renews: true,
        }],
        Some(Checkpoint::Rotation { rotation, lease_token, lease_expires_at }) => vec![
            Record {
                sql: RENEW_LEASE,
                values: vec![Value::Int(lease_expires_at), Value::Text(lease_token)],
                renews: true,
            },
            Record {
                sql: CHECKPOINT,
                values: vec![
                    counted,
                    rows.last().map_or(Value::Null, |row| Value::Text(&row.id)),
                    Value::Int(rotation),
                ],
                renews: false,
            },
        ],
        None => Vec::new(),
    }
}

/// The queries both stores share; `$db` is the store's sqlx database, for the helpers that take
/// a transaction.
macro_rules! shared_queries {
    ($db:ty) => {
        pub(super) fn url(&self) -> &str {
            &self.url
        }

        pub(super) fn table(&self) -> &WalletTable {
            &self.table
        }

        /// The same pool, reading and writing `table`.
        pub(super) fn with_table(&self, table: WalletTable) -> Self {
            Self { table, ..self.clone() }
        }

        /// One transaction, serialized across processes by `MIGRATION_LOCK` where the database
        /// needs it: PostgreSQL's concurrent `CREATE TABLE IF NOT EXISTS` can collide.
        pub(super) async fn migrate(&self) -> Result<(), StoreError> {
            let mut tx = self.pool.begin().await?;
            if let Some(lock) = MIGRATION_LOCK {
                sqlx::query(lock).execute(&mut *tx).await?;
            }
            for statement in super::shared::schema(&DIALECT) {
                sqlx::query(AssertSqlSafe(statement)).execute(&mut *tx).await?;
            }
            for (table, column, statement) in super::shared::ADDED_COLUMNS {
                let columns: Vec<String> =
                    sqlx::query_scalar(TABLE_COLUMNS).bind(*table).fetch_all(&mut *tx).await?;
                if !columns.iter().any(|c| c == column) {
                    sqlx::query(*statement).execute(&mut *tx).await?;
                }
            }
            Self::allow_aborted_status(&mut tx).await?;
            tx.commit().await?;
            Ok(())
        }

        /// Rows per what their ciphertext names (`version_label`: a version, `legacy`, or for
        /// rows holding no text ciphertext a label of their own, since they are not legacy
        /// wallets).
        pub(super) async fn version_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
            let QuotedNames { table, ciphertext: ct, .. } = self.table.quoted();
            let sql = format!(
                "SELECT {} AS version, COUNT(*) FROM {table} WHERE {} GROUP BY 1",
                Self::version_label(&ct),
                self.table.rows_sql(None)
            );
            Ok(sqlx::query_as(AssertSqlSafe(sql)).fetch_all(&self.pool).await?)
        }

        pub(super) async fn count(&self) -> Result<u64, StoreError> {
            let sql = format!("SELECT COUNT(*) FROM {} WHERE {}", self.table.quoted().table, self.table.rows_sql(None));
            let count: i64 = sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&self.pool).await?;
            Ok(count as u64)
        }

        /// The checked scan (see `Database::checked_scan`): the rows with a usable id, each
        /// with its ciphertext or why it holds none rotor can hand out.
        pub(super) async fn checked_scan(
            &self,
            after: Option<&str>,
            upto: Option<&str>,
            limit: u32,
            skip_prefix: Option<&str>,
        ) -> Result<Vec<Scanned>, StoreError> {
            let names = self.table.quoted();
            let QuotedNames { table, id, ciphertext: ct } = &names;
            let mut conditions = vec![Self::addressable(id)];
            if after.is_some() {
                conditions.push(format!("{id} > ${}", conditions.len() + 1));
            }
            if upto.is_some() {
                conditions.push(format!("{id} <= ${}", conditions.len() + 1));
            }
            // A row that holds no text is never on the target: it is read, to be reported.
            if skip_prefix.is_some() {
                conditions.push(format!("({} OR {ct} NOT LIKE ${})", Self::not_text(ct), conditions.len() + 1));
            }
            // Last: it holds no placeholder, so those above keep counting from $2.
            conditions.push(self.table.rows_sql(None));
            let sql = format!(
                "SELECT {} FROM {table} WHERE {} ORDER BY {id} LIMIT $1",
                Self::checked_columns(&names),
                conditions.join(" AND ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(i64::from(limit));
            if let Some(after) = after {
                query = query.bind(after);
            }
            if let Some(upto) = upto {
                query = query.bind(upto);
            }
            if let Some(prefix) = skip_prefix {
                query = query.bind(format!("{prefix}%"));
            }
            let rows = query.fetch_all(&self.pool).await?;
            Ok(rows.iter().map(|row| self.decode_checked(row)).collect::<Result<_, sqlx::Error>>()?)
        }

        pub(super) async fn checked_get(&self, wanted: &str) -> Result<Option<Scanned>, StoreError> {
            let names = self.table.quoted();
            let sql = format!(
                "SELECT {} FROM {} WHERE {} = $1 AND {}",
                Self::checked_columns(&names),
                names.table,
                names.id,
                self.table.rows_sql(None)
            );
            let row = sqlx::query(AssertSqlSafe(sql)).bind(wanted).fetch_optional(&self.pool).await?;
            Ok(row.map(|row| self.decode_checked(&row)).transpose()?)
        }

        /// The id `offset` rows after `after` (after the start if `None`), walking the index.
        /// Rows without a usable id are no boundary: the walk never reads them.
        pub(super) async fn nth_id_after(&self, after: Option<&str>, offset: i64) -> Result<Option<String>, StoreError> {
            let QuotedNames { table, id, .. } = self.table.quoted();
            let addressable = format!("{} AND {}", Self::addressable(&id), self.table.rows_sql(None));
            let found = match after {
                Some(after) => {
                    let sql = format!(
                        "SELECT {id} FROM {table} WHERE {addressable} AND {id} > $1 ORDER BY {id} LIMIT 1 OFFSET $2"
                    );
                    sqlx::query_scalar(AssertSqlSafe(sql)).bind(after).bind(offset).fetch_optional(&self.pool).await?
                }
                None => {
                    let sql = format!("SELECT {id} FROM {table} WHERE {addressable} ORDER BY {id} LIMIT 1 OFFSET $1");
                    sqlx::query_scalar(AssertSqlSafe(sql)).bind(offset).fetch_optional(&self.pool).await?
                }
            };
            Ok(found)
        }

        pub(super) async fn get(&self, id: &str) -> Result<Option<String>, StoreError> {
            let QuotedNames { table, id: id_column, ciphertext: ciphertext_column } = self.table.quoted();
            let sql = format!(
                "SELECT {ciphertext_column} FROM {table} WHERE {id_column} = $1 AND {}",
                self.table.rows_sql(None)
            );
            Ok(sqlx::query_scalar(AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?)
        }

        pub(super) async fn put(&self, id: &str, ciphertext: &str) -> Result<(), StoreError> {
            let QuotedNames { table, id: idc, ciphertext: ct } = self.table.quoted();
            // A row of another tenant is never taken over: the update applies to this tenant's
            // rows alone, and a conflict with another's changes nothing, which is refused.
            let (tenant_column, tenant) = self.table.tenant_insert();
            let sql = format!(
                "INSERT INTO {table} ({idc}, {ct}{tenant_column}) VALUES ($1, $2{tenant}) \
                 ON CONFLICT ({idc}) DO UPDATE SET {ct} = excluded.{ct} WHERE {}",
                self.table.rows_sql(Some(&table))
            );
            let done = sqlx::query(AssertSqlSafe(sql)).bind(id).bind(ciphertext).execute(&self.pool).await?;
            if done.rows_affected() == 0 {
                let whose = match (&self.table.tenant, &self.table.filter) {
                    (Some(t), _) => format!("tenant {:?}'s", t.tenant),
                    (None, Some(f)) => format!("one of this target's rows ({} = {})", f.column, f.value),
                    (None, None) => "one rotor may write".to_owned(),
                };
                return Err(StoreError::Config(format!(
                    "wallet {id:?} exists in table `{}` but is not {whose}: it was left as it is",
                    self.table.table
                )));
            }
            Ok(())
        }

        pub(super) async fn insert_rotation(
            &self,
            rotation: &NewRotation<'_>,
            scope: &super::Scope,
            who: &RunIdentity,
            started_at: &str,
        ) -> Result<RotationRecord, StoreError> {
            let NewRotation { from_version, total, reencrypt, output_format, restores } = *rotation;
            let sql = format!(
                "INSERT INTO rotor_rotations (started_by, component_sha256, vault_identity, from_version, \
                 status, running, started_at, total, reencrypt, output_format, restores, key_path, targets) \
                 VALUES ($1, $2, $3, $4, 'running', 1, $5, $6, $7, $8, $9, $10, $11) RETURNING {}",
                super::shared::ROTATION_COLUMNS
            );
            let begun = sqlx::query_as(AssertSqlSafe(sql))
                .bind(&who.started_by)
                .bind(&who.component_sha256)
                .bind(&who.vault_identity)
                .bind(from_version)
                .bind(started_at)
                .bind(total)
                .bind(reencrypt)
                .bind(output_format)
                .bind(restores)
                .bind(&scope.key_path)
                .bind(scope.targets_text())
                .fetch_one(&self.pool)
                .await?;
            Ok(begun)
        }

        /// Records the rotation's target KEK version and, in the same transaction, its key ranges
        /// (any planned before are replaced).
        pub(super) async fn set_rotation_target(
            &self,
            id: i64,
            to_version: i64,
            boundaries: &[Vec<String>],
        ) -> Result<(), StoreError> {
            let mut tx = self.pool.begin().await?;
            sqlx::query("DELETE FROM rotor_ranges WHERE rotation_id = $1").bind(id).execute(&mut *tx).await?;
            Self::insert_ranges_in(&mut tx, id, boundaries).await?;
            sqlx::query("UPDATE rotor_rotations SET to_version = $1 WHERE id = $2 AND status = 'running'")
                .bind(to_version)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        }

        pub(super) async fn insert_ranges(&self, id: i64, boundaries: &[Vec<String>]) -> Result<(), StoreError> {
            let mut tx = self.pool.begin().await?;
            Self::insert_ranges_in(&mut tx, id, boundaries).await?;
            tx.commit().await?;
            Ok(())
        }

        async fn insert_ranges_in(
            tx: &mut sqlx::Transaction<'_, $db>,
            id: i64,
            boundaries: &[Vec<String>],
        ) -> Result<(), StoreError> {
            // Spelled out before the first await: an iterator of borrowed ranges held across
            // it does not satisfy the Send bound of the async import.
            let mut per_target: Vec<(i64, Option<&str>, Option<&str>)> = Vec::new();
            for (target, boundaries) in boundaries.iter().enumerate() {
                let first = super::shared::target_seqs(target).0;
                for (n, (after, upto)) in super::shared::ranges(boundaries).enumerate() {
                    per_target.push((first + n as i64, after, upto));
                }
            }
            for (seq, after, upto) in per_target {
                sqlx::query(
                    "INSERT INTO rotor_ranges (rotation_id, seq, after_id, upto_id) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (rotation_id, seq) DO NOTHING",
                )
                .bind(id)
                .bind(seq)
                .bind(after)
                .bind(upto)
                .execute(&mut **tx)
                .await?;
            }
            Ok(())
        }

        pub(super) async fn range_count(&self, id: i64) -> Result<i64, StoreError> {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM rotor_ranges WHERE rotation_id = $1")
                .bind(id)
                .fetch_one(&self.pool)
                .await?)
        }

        pub(super) async fn claim_range(
            &self,
            rotation: i64,
            target: usize,
            who: &RunIdentity,
            expires_at: i64,
            now: i64,
        ) -> Result<Option<ClaimedRange>, StoreError> {
            let (first, end) = super::shared::target_seqs(target);
            Ok(sqlx::query_as(AssertSqlSafe(super::shared::claim_range_sql(CLAIM_LOCK)))
                .bind(&who.lease_token)
                .bind(&who.started_by)
                .bind(expires_at)
                .bind(rotation)
                .bind(now)
                .bind(rotation)
                .bind(now)
                .bind(&who.host)
                .bind(i64::from(who.pid))
                .bind(&who.process_key)
                .bind(first)
                .bind(end)
                .fetch_optional(&self.pool)
                .await?)
        }

        /// Frees a claimed range, if `token` still holds it.
        pub(super) async fn release_range(&self, rotation: i64, seq: i64, token: &str) -> Result<(), StoreError> {
            sqlx::query(
                "UPDATE rotor_ranges SET state = 'pending', token = NULL, expires_at = NULL \
                 WHERE rotation_id = $1 AND seq = $2 AND token = $3 AND state = 'claimed'",
            )
            .bind(rotation)
            .bind(seq)
            .bind(token)
            .execute(&self.pool)
            .await?;
            Ok(())
        }

        pub(super) async fn release_claims(&self, rotation: i64, token: &str) -> Result<(), StoreError> {
            sqlx::query(
                "UPDATE rotor_ranges SET state = 'pending', token = NULL, expires_at = NULL \
                 WHERE rotation_id = $1 AND token = $2 AND state = 'claimed'",
            )
            .bind(rotation)
            .bind(token)
            .execute(&self.pool)
            .await?;
            Ok(())
        }

        /// Live claims on `host`: (seq, token, pid, process key).
        pub(super) async fn claims_on(
            &self,
            rotation: i64,
            host: &str,
        ) -> Result<Vec<(i64, String, i64, Option<String>)>, StoreError> {
            Ok(sqlx::query_as(
                "SELECT seq, token, pid, process_key FROM rotor_ranges WHERE rotation_id = $1 AND state = 'claimed' \
                 AND host = $2",
            )
            .bind(rotation)
            .bind(host)
            .fetch_all(&self.pool)
            .await?)
        }

        pub(super) async fn renew_range(&self, rotation: i64, seq: i64, token: &str, expires_at: i64) -> Result<bool, StoreError> {
            let done = sqlx::query(
                "UPDATE rotor_ranges SET expires_at = $1 WHERE rotation_id = $2 AND seq = $3 AND token = $4 \
                 AND state = 'claimed'",
            )
            .bind(expires_at)
            .bind(rotation)
            .bind(seq)
            .bind(token)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(super) async fn finish_range(&self, rotation: i64, seq: i64, token: &str) -> Result<(), StoreError> {
            sqlx::query(
                "UPDATE rotor_ranges SET state = 'done', token = NULL, expires_at = NULL \
                 WHERE rotation_id = $1 AND seq = $2 AND token = $3",
            )
            .bind(rotation)
            .bind(seq)
            .bind(token)
            .execute(&self.pool)
            .await?;
            Ok(())
        }

        pub(super) async fn ranges_left(&self, rotation: i64, target: usize) -> Result<u64, StoreError> {
            let (first, end) = super::shared::target_seqs(target);
            let left: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM rotor_ranges WHERE rotation_id = $1 AND state <> 'done' AND seq >= $2 AND seq < $3",
            )
                .bind(rotation)
                .bind(first)
                .bind(end)
                .fetch_one(&self.pool)
                .await?;
            Ok(left as u64)
        }

        pub(super) async fn range_bounds(
            &self,
            rotation: i64,
            target: usize,
        ) -> Result<Vec<(Option<String>, Option<String>)>, StoreError> {
            let (first, end) = super::shared::target_seqs(target);
            Ok(sqlx::query_as(
                "SELECT after_id, upto_id FROM rotor_ranges WHERE rotation_id = $1 AND seq >= $2 AND seq < $3 \
                 ORDER BY seq",
            )
            .bind(rotation)
            .bind(first)
            .bind(end)
            .fetch_all(&self.pool)
            .await?)
        }

        pub(super) async fn range_rotated(&self, rotation: i64) -> Result<i64, StoreError> {
            Ok(sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(rotated), 0) AS BIGINT) FROM rotor_ranges WHERE rotation_id = $1",
            )
            .bind(rotation)
            .fetch_one(&self.pool)
            .await?)
        }

        pub(super) async fn range_progress(&self, rotation: i64, now: i64) -> Result<RangeProgress, StoreError> {
            let (ranges, done): (i64, i64) = sqlx::query_as(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN state = 'done' THEN 1 ELSE 0 END), 0) \
                 FROM rotor_ranges WHERE rotation_id = $1",
            )
            .bind(rotation)
            .fetch_one(&self.pool)
            .await?;
            let holders: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT holder FROM rotor_ranges WHERE rotation_id = $1 AND state = 'claimed' \
                 AND expires_at >= $2 ORDER BY holder",
            )
            .bind(rotation)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
            Ok(RangeProgress { ranges: ranges as u64, done: done as u64, holders })
        }

        /// Sets the final `status` of a running rotation (finished or aborted).
        pub(super) async fn close_rotation(
            &self,
            id: i64,
            status: RotationStatus,
            failed: i64,
            finished_at: &str,
            unclaimed_at: Option<i64>,
        ) -> Result<bool, StoreError> {
            // With `unclaimed_at`, a range claimed and not run out at that instant keeps the
            // rotation open: the check and the close are one statement, so a walker that claims
            // a range after an earlier look found none is seen here, not closed under.
            let unclaimed = match unclaimed_at {
                Some(_) => " AND NOT EXISTS (SELECT 1 FROM rotor_ranges WHERE rotation_id = $6 \
                            AND state = 'claimed' AND expires_at >= $7)",
                None => "",
            };
            let sql = format!(
                "UPDATE rotor_rotations SET status = $5, running = NULL, failed = $1, finished_at = $2, \
                 rotated = rotated + (SELECT CAST(COALESCE(SUM(rotated), 0) AS BIGINT) FROM rotor_ranges \
                 WHERE rotation_id = $3) WHERE id = $4 AND status = 'running'{unclaimed}"
            );
            let mut tx = self.pool.begin().await?;
            let mut close =
                sqlx::query(AssertSqlSafe(sql)).bind(failed).bind(finished_at).bind(id).bind(id).bind(status.as_str());
            if let Some(now) = unclaimed_at {
                close = close.bind(id).bind(now);
            }
            if close.execute(&mut *tx).await?.rows_affected() == 0 {
                return Ok(false);
            }
            // A batch of a walker that still holds a claim checks it in its own transaction
            // (`CHECKPOINT_RANGE`): with the ranges gone, none commits after this.
            sqlx::query("DELETE FROM rotor_ranges WHERE rotation_id = $1").bind(id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(true)
        }

        pub(super) async fn rotations(&self) -> Result<Vec<RotationRecord>, StoreError> {
            let sql = format!("SELECT {} FROM rotor_rotations ORDER BY id DESC", super::shared::ROTATION_COLUMNS);
            match sqlx::query_as(AssertSqlSafe(sql)).fetch_all(&self.pool).await {
                Ok(rows) => Ok(rows),
                Err(e) if super::shared::is_missing_table(&e) => Ok(Vec::new()),
                Err(e) => Err(e.into()),
            }
        }

        pub(super) async fn lease(&self) -> Result<Option<LeaseHolder>, StoreError> {
            let lease = sqlx::query_as(
                "SELECT token, holder, host, pid, process_key, acquired_at, expires_at FROM rotor_lease WHERE id = 1",
            )
            .fetch_optional(&self.pool)
            .await;
            match lease {
                Err(e) if super::shared::is_missing_table(&e) => Ok(None),
                lease => Ok(lease?),
            }
        }

        /// Takes the lease if it is free, or replaces `stale` (the holder last seen) — a
        /// compare-and-swap on its token, so two processes cannot both take over.
        pub(super) async fn take_lease(
            &self,
            who: &RunIdentity,
            stale: Option<&str>,
            acquired_at: &str,
            expires_at: i64,
        ) -> Result<bool, StoreError> {
            // With no stale holder ($7 NULL) an existing row is never replaced.
            let done = sqlx::query(
                "INSERT INTO rotor_lease (id, token, holder, host, pid, acquired_at, expires_at, process_key) \
                 VALUES (1, $1, $2, $3, $4, $5, $6, $8) ON CONFLICT (id) DO UPDATE SET token = excluded.token, \
                 holder = excluded.holder, host = excluded.host, pid = excluded.pid, \
                 acquired_at = excluded.acquired_at, expires_at = excluded.expires_at, \
                 process_key = excluded.process_key WHERE rotor_lease.token = $7",
            )
            .bind(&who.lease_token)
            .bind(&who.started_by)
            .bind(&who.host)
            .bind(i64::from(who.pid))
            .bind(acquired_at)
            .bind(expires_at)
            .bind(stale)
            .bind(&who.process_key)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(super) async fn renew_lease(&self, token: &str, expires_at: i64) -> Result<bool, StoreError> {
            let done = sqlx::query(super::shared::RENEW_LEASE)
                .bind(expires_at)
                .bind(token)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(super) async fn release_lease(&self, token: &str) -> Result<(), StoreError> {
            match sqlx::query("DELETE FROM rotor_lease WHERE id = 1 AND token = $1").bind(token).execute(&self.pool).await {
                Ok(_) => Ok(()),
                Err(e) if super::shared::is_missing_table(&e) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    };
}

pub(super) use shared_queries;
