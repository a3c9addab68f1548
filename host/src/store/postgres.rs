//! PostgreSQL (production). A batch is one `UPDATE … FROM UNNEST(…)` statement: three array
//! parameters, whatever the batch size, so a batch costs one round trip.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};

use super::{
    BatchOutcome, ROTATION_COLUMNS, Replacement, RotationRecord, RunIdentity, StoreError, WalletRow,
    WalletTable, redact_url,
};

const MIGRATIONS: &[&str] = &["CREATE TABLE IF NOT EXISTS rotor_rotations (
        id BIGSERIAL PRIMARY KEY,
        from_version BIGINT NOT NULL,
        to_version BIGINT NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status IN ('running', 'finished')),
        -- 1 while running, NULL afterwards: the UNIQUE constraint allows one running rotation.
        running SMALLINT UNIQUE CHECK (running = 1),
        started_at TEXT NOT NULL,
        finished_at TEXT,
        started_by TEXT NOT NULL,
        total BIGINT NOT NULL,
        rotated BIGINT NOT NULL DEFAULT 0,
        failed BIGINT NOT NULL DEFAULT 0,
        reencrypt BOOLEAN NOT NULL,
        component_sha256 TEXT NOT NULL,
        last_id TEXT
    )"];

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    url: String,
    table: WalletTable,
}

impl PgStore {
    pub(super) async fn connect(url: &str, table: WalletTable) -> Result<Self, StoreError> {
        let shown = redact_url(url);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| StoreError::Connect { url: shown.clone(), reason: e.to_string() })?;
        Ok(PgStore { pool, url: shown, table })
    }

    pub(super) fn url(&self) -> &str {
        &self.url
    }

    pub(super) fn table(&self) -> &WalletTable {
        &self.table
    }

    pub(super) async fn columns(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT column_name::text AS name FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(&self.table.table)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|row| row.get("name")).collect())
    }

    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        for statement in MIGRATIONS {
            sqlx::query(*statement).execute(&self.pool).await?;
        }
        Ok(())
    }

    pub(super) async fn count(&self) -> Result<u64, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM {}", self.table.table);
        let count: i64 = sqlx::query_scalar(AssertSqlSafe(sql.as_str())).fetch_one(&self.pool).await?;
        Ok(count as u64)
    }

    pub(super) async fn scan(&self, after: Option<&str>, limit: u32) -> Result<Vec<WalletRow>, StoreError> {
        let WalletTable { table, id_column: id, ciphertext_column: ct } = &self.table;
        let sql = format!(
            "SELECT {id}, {ct} FROM {table} WHERE $1::text IS NULL OR {id} > $1 ORDER BY {id} LIMIT $2"
        );
        let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok(WalletRow { id: row.try_get(0)?, ciphertext: row.try_get(1)? })).collect()
    }

    pub(super) async fn get(&self, id: &str) -> Result<Option<String>, StoreError> {
        let WalletTable { table, id_column, ciphertext_column } = &self.table;
        let sql = format!("SELECT {ciphertext_column} FROM {table} WHERE {id_column} = $1");
        Ok(sqlx::query_scalar(AssertSqlSafe(sql.as_str())).bind(id).fetch_optional(&self.pool).await?)
    }

    pub(super) async fn put(&self, id: &str, ciphertext: &str) -> Result<(), StoreError> {
        let WalletTable { table, id_column: idc, ciphertext_column: ct } = &self.table;
        let sql = format!(
            "INSERT INTO {table} ({idc}, {ct}) VALUES ($1, $2) ON CONFLICT ({idc}) DO UPDATE SET {ct} = excluded.{ct}"
        );
        sqlx::query(AssertSqlSafe(sql.as_str())).bind(id).bind(ciphertext).execute(&self.pool).await?;
        Ok(())
    }

    pub(super) async fn put_many(&self, rows: &[WalletRow]) -> Result<(), StoreError> {
        let WalletTable { table, id_column: idc, ciphertext_column: ct } = &self.table;
        let sql = format!(
            "INSERT INTO {table} ({idc}, {ct}) SELECT * FROM UNNEST($1::text[], $2::text[]) \
             ON CONFLICT ({idc}) DO UPDATE SET {ct} = excluded.{ct}"
        );
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(10_000) {
            let ids: Vec<&str> = chunk.iter().map(|r| r.id.as_str()).collect();
            let ciphertexts: Vec<&str> = chunk.iter().map(|r| r.ciphertext.as_str()).collect();
            sqlx::query(AssertSqlSafe(sql.as_str())).bind(ids).bind(ciphertexts).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn replace_batch(
        &self,
        rows: &[Replacement],
        rotation: Option<i64>,
    ) -> Result<BatchOutcome, StoreError> {
        let WalletTable { table, id_column: idc, ciphertext_column: ct } = &self.table;
        let column = |f: fn(&Replacement) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
        // The compare-and-swap is the `w.{ct} = v.expected` condition.
        let sql = format!(
            "UPDATE {table} AS w SET {ct} = v.replacement \
             FROM UNNEST($1::text[], $2::text[], $3::text[]) AS v(id, expected, replacement) \
             WHERE w.{idc} = v.id AND w.{ct} = v.expected RETURNING w.{idc}"
        );
        let mut tx = self.pool.begin().await?;
        let replaced: HashSet<String> = sqlx::query_scalar(AssertSqlSafe(sql.as_str()))
            .bind(column(|r| &r.id))
            .bind(column(|r| &r.expected))
            .bind(column(|r| &r.replacement))
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        if let (Some(rotation), Some(last)) = (rotation, rows.last()) {
            sqlx::query("UPDATE rotor_rotations SET rotated = rotated + $1, last_id = $2 WHERE id = $3")
                .bind(replaced.len() as i64)
                .bind(&last.id)
                .bind(rotation)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(BatchOutcome {
            replaced: replaced.len() as u32,
            conflicts: rows.iter().filter(|r| !replaced.contains(&r.id)).map(|r| r.id.clone()).collect(),
        })
    }

    pub(super) async fn insert_rotation(
        &self,
        from_version: i64,
        total: i64,
        reencrypt: bool,
        who: &RunIdentity,
        started_at: &str,
    ) -> Result<RotationRecord, StoreError> {
        let sql = format!(
            "INSERT INTO rotor_rotations (from_version, status, running, started_at, started_by, total, \
             reencrypt, component_sha256) VALUES ($1, 'running', 1, $2, $3, $4, $5, $6) RETURNING {ROTATION_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql.as_str()))
            .bind(from_version)
            .bind(started_at)
            .bind(&who.started_by)
            .bind(total)
            .bind(reencrypt)
            .bind(&who.component_sha256)
            .fetch_one(&self.pool)
            .await?;
        Ok(super::rotation_from_row!(row))
    }

    pub(super) async fn set_rotation_target(&self, id: i64, to_version: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE rotor_rotations SET to_version = $1 WHERE id = $2 AND status = 'running'")
            .bind(to_version)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn finish_rotation(
        &self,
        id: i64,
        failed: i64,
        finished_at: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE rotor_rotations SET status = 'finished', running = NULL, failed = $1, finished_at = $2 WHERE id = $3",
        )
        .bind(failed)
        .bind(finished_at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn rotations(&self) -> Result<Vec<RotationRecord>, StoreError> {
        let sql = format!("SELECT {ROTATION_COLUMNS} FROM rotor_rotations ORDER BY id DESC");
        match sqlx::query(AssertSqlSafe(sql.as_str())).fetch_all(&self.pool).await {
            Ok(rows) => rows.into_iter().map(|row| Ok(super::rotation_from_row!(row))).collect(),
            // 42P01: undefined_table — rotor has never run against this database.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
}
