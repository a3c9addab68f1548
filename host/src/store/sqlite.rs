//! SQLite (the embedded default), in WAL mode so readers keep reading during a rotation.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection, QueryBuilder, Row, Sqlite};

use super::{
    BatchOutcome, ROTATION_COLUMNS, Replacement, RotationRecord, RunIdentity, StoreError, WalletRow,
    WalletTable,
};

/// Rows per UPDATE statement: 3 bound values each, far below SQLite's 32766-variable limit,
/// and large enough that per-statement overhead (~100 µs through sqlx) is amortised.
const ROWS_PER_STATEMENT: usize = 1000;

const MIGRATIONS: &[&str] = &["CREATE TABLE IF NOT EXISTS rotor_rotations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        from_version INTEGER NOT NULL,
        to_version INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status IN ('running', 'finished')),
        -- 1 while running, NULL afterwards: the UNIQUE constraint allows one running rotation.
        running INTEGER UNIQUE CHECK (running = 1),
        started_at TEXT NOT NULL,
        finished_at TEXT,
        started_by TEXT NOT NULL,
        total INTEGER NOT NULL,
        rotated INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        reencrypt BOOLEAN NOT NULL,
        component_sha256 TEXT NOT NULL,
        last_id TEXT
    )"];

pub(super) async fn create_database(path: &Path, table: &WalletTable) -> Result<String, StoreError> {
    let url = format!("sqlite://{}", path.display());
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    if path.exists() {
        return Err(StoreError::Config(format!("{} exists already; choose a new file", path.display())));
    }
    let mut connection = sqlx::SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| StoreError::Connect { url: url.clone(), reason: e.to_string() })?;
    sqlx::query(AssertSqlSafe(table.create_statement())).execute(&mut connection).await?;
    connection.close().await?;
    Ok(url)
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    url: String,
    table: WalletTable,
}

impl SqliteStore {
    pub(super) async fn connect(url: &str, table: WalletTable) -> Result<Self, StoreError> {
        let connect_error = |reason: String| StoreError::Connect { url: url.to_owned(), reason };
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| connect_error(e.to_string()))?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        if !options.get_filename().exists() {
            return Err(connect_error(
                "the file does not exist (rotor never creates the application's database)".into(),
            ));
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        Ok(SqliteStore { pool, url: url.to_owned(), table })
    }

    pub(super) fn url(&self) -> &str {
        &self.url
    }

    pub(super) fn table(&self) -> &WalletTable {
        &self.table
    }

    pub(super) async fn columns(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT name FROM pragma_table_info(?)")
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
        let sql = format!("SELECT {id}, {ct} FROM {table} WHERE {id} > ? ORDER BY {id} LIMIT ?");
        let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok(WalletRow { id: row.try_get(0)?, ciphertext: row.try_get(1)? })).collect()
    }

    pub(super) async fn get(&self, id: &str) -> Result<Option<String>, StoreError> {
        let WalletTable { table, id_column, ciphertext_column } = &self.table;
        let sql = format!("SELECT {ciphertext_column} FROM {table} WHERE {id_column} = ?");
        Ok(sqlx::query_scalar(AssertSqlSafe(sql.as_str())).bind(id).fetch_optional(&self.pool).await?)
    }

    pub(super) async fn put(&self, id: &str, ciphertext: &str) -> Result<(), StoreError> {
        let WalletTable { table, id_column: idc, ciphertext_column: ct } = &self.table;
        let sql = format!(
            "INSERT INTO {table} ({idc}, {ct}) VALUES (?, ?) ON CONFLICT ({idc}) DO UPDATE SET {ct} = excluded.{ct}"
        );
        sqlx::query(AssertSqlSafe(sql.as_str())).bind(id).bind(ciphertext).execute(&self.pool).await?;
        Ok(())
    }

    pub(super) async fn put_many(&self, rows: &[WalletRow]) -> Result<(), StoreError> {
        let WalletTable { table, id_column: idc, ciphertext_column: ct } = &self.table;
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::<Sqlite>::new(format!("INSERT INTO {table} ({idc}, {ct}) "));
            query.push_values(chunk, |mut values, row| {
                values.push_bind(&row.id).push_bind(&row.ciphertext);
            });
            query.push(format!(" ON CONFLICT ({idc}) DO UPDATE SET {ct} = excluded.{ct}"));
            query.build().execute(&mut *tx).await?;
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
        let mut tx = self.pool.begin().await?;
        let mut replaced = HashSet::with_capacity(rows.len());
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            // One statement per chunk: the compare-and-swap is the `{ct} = v.column2` condition.
            let mut query =
                QueryBuilder::<Sqlite>::new(format!("UPDATE {table} SET {ct} = v.column3 FROM ("));
            query.push_values(chunk, |mut values, row| {
                values.push_bind(&row.id).push_bind(&row.expected).push_bind(&row.replacement);
            });
            query.push(format!(
                ") AS v WHERE {table}.{idc} = v.column1 AND {table}.{ct} = v.column2 RETURNING {table}.{idc}"
            ));
            let ids: Vec<String> = query.build_query_scalar().fetch_all(&mut *tx).await?;
            replaced.extend(ids);
        }
        if let (Some(rotation), Some(last)) = (rotation, rows.last()) {
            sqlx::query("UPDATE rotor_rotations SET rotated = rotated + ?, last_id = ? WHERE id = ?")
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
             reencrypt, component_sha256) VALUES (?, 'running', 1, ?, ?, ?, ?, ?) RETURNING {ROTATION_COLUMNS}"
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
        sqlx::query("UPDATE rotor_rotations SET to_version = ? WHERE id = ? AND status = 'running'")
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
            "UPDATE rotor_rotations SET status = 'finished', running = NULL, failed = ?, finished_at = ? WHERE id = ?",
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
            Err(sqlx::Error::Database(e)) if e.message().contains("no such table") => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
}
