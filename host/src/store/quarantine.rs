//! Quarantine: rows under a KEK that open under no key Vault holds, set aside by the operator
//! (`rotor quarantine`) so that they stop blocking the destruction of the version they name.
//!
//! Setting a row aside never touches the application's table: rotor records the row's id and
//! its exact ciphertext in `rotor_quarantine`. A version's rows are then counted without those
//! still holding the recorded ciphertext. A row that changes afterwards (restored from a
//! backup, re-sealed) no longer matches its record and counts, and blocks, again.

use serde::Serialize;

/// One row set aside, as `rotor_quarantine` holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct QuarantinedRow {
    /// The table the row is in.
    #[sqlx(rename = "target_table")]
    pub table: String,
    /// The row's id.
    #[sqlx(rename = "row_id")]
    pub id: String,
    /// What its ciphertext names: a version number, or `legacy`.
    pub kek_version: String,
    /// Why it does not open, as rotor found when setting it aside.
    pub reason: String,
    /// When it was set aside (RFC 3339, UTC).
    pub quarantined_at: String,
    /// `user@host (pid N)` of the rotor that set it aside.
    pub quarantined_by: String,
    /// The ciphertext recorded: the row is quarantined only while it still holds exactly this.
    #[serde(skip)]
    pub ciphertext: String,
}

/// What a ciphertext names, as the databases' `version_counts` classify text ciphertexts: the
/// text between `rotor:v` and the next `:`, or `legacy`.
pub fn named_version(ciphertext: &str) -> String {
    match ciphertext.strip_prefix("rotor:v") {
        Some(rest) => rest.split(':').next().unwrap_or_default().to_owned(),
        None => "legacy".to_owned(),
    }
}

/// The quarantine's queries, the same on both databases (`$n` placeholders), expanded into
/// each store's `impl`. A database whose `rotor_quarantine` does not exist yet (a read-only
/// command before any migration) has an empty quarantine.
macro_rules! quarantine_queries {
    () => {
        /// Records `row` as set aside under `key_path` (replacing an earlier record of its id).
        pub(super) async fn quarantine_row(
            &self,
            key_path: &str,
            row: &super::QuarantinedRow,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO rotor_quarantine (key_path, target_table, row_id, kek_version, ciphertext, reason, \
                 quarantined_at, quarantined_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (key_path, target_table, row_id) DO UPDATE SET kek_version = excluded.kek_version, \
                 ciphertext = excluded.ciphertext, reason = excluded.reason, \
                 quarantined_at = excluded.quarantined_at, quarantined_by = excluded.quarantined_by",
            )
            .bind(key_path)
            .bind(&row.table)
            .bind(&row.id)
            .bind(&row.kek_version)
            .bind(&row.ciphertext)
            .bind(&row.reason)
            .bind(&row.quarantined_at)
            .bind(&row.quarantined_by)
            .execute(&self.pool)
            .await?;
            Ok(())
        }

        /// Every row set aside under `key_path`, by table and id.
        pub(super) async fn quarantined(&self, key_path: &str) -> Result<Vec<super::QuarantinedRow>, StoreError> {
            let listed = sqlx::query_as(
                "SELECT target_table, row_id, kek_version, reason, quarantined_at, quarantined_by, ciphertext \
                 FROM rotor_quarantine WHERE key_path = $1 ORDER BY target_table, row_id",
            )
            .bind(key_path)
            .fetch_all(&self.pool)
            .await;
            match listed {
                Err(e) if super::shared::is_missing_table(&e) => Ok(Vec::new()),
                listed => Ok(listed?),
            }
        }

        /// Drops the records of `id` under `key_path` (in any table); how many there were.
        pub(super) async fn release_quarantined(&self, key_path: &str, id: &str) -> Result<u64, StoreError> {
            let done = sqlx::query("DELETE FROM rotor_quarantine WHERE key_path = $1 AND row_id = $2")
                .bind(key_path)
                .bind(id)
                .execute(&self.pool)
                .await;
            match done {
                Err(e) if super::shared::is_missing_table(&e) => Ok(0),
                done => Ok(done?.rows_affected()),
            }
        }

        /// Rows of this table (this tenant's, if one is set) still holding the ciphertext
        /// recorded when they were set aside under `key_path`, per version they name, labelled
        /// by the very expression `version_counts` uses, so that one can be taken from the other.
        pub(super) async fn quarantined_counts(&self, key_path: &str) -> Result<Vec<(String, i64)>, StoreError> {
            let QuotedNames { table, id, ciphertext: ct } = self.table.quoted();
            let sql = format!(
                "SELECT {} AS version, COUNT(*) FROM rotor_quarantine q JOIN {table} \
                 ON {table}.{id} = q.row_id AND {table}.{ct} = q.ciphertext \
                 WHERE q.key_path = $1 AND q.target_table = $2 AND {} GROUP BY 1",
                Self::version_label(&format!("{table}.{ct}")),
                self.table.rows_sql(Some(&table))
            );
            let counted =
                sqlx::query_as(AssertSqlSafe(sql)).bind(key_path).bind(&self.table.table).fetch_all(&self.pool).await;
            match counted {
                Err(e) if super::shared::is_missing_table(&e) => Ok(Vec::new()),
                counted => Ok(counted?),
            }
        }
    };
}

pub(super) use quarantine_queries;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ciphertext_names_what_the_databases_count() {
        assert_eq!(named_version("rotor:v12:abc:def"), "12");
        assert_eq!(named_version("rotor:vx"), "x");
        assert_eq!(named_version("bm9uY2U=:Y3Q="), "legacy");
        assert_eq!(named_version(""), "legacy");
    }
}
