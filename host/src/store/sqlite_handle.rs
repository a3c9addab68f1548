//! A batch's transaction run on the calling thread, through a pooled SQLite connection's own
//! handle.
//!
//! sqlx runs each SQLite statement on a thread the connection owns and hands the result back:
//! two thread wake-ups per statement. A walk's batch is four statements (begin, the swap, the
//! checkpoint, commit) inside this process's write gate, and on a 2-core machine busy with the
//! other worker's batch each wake-up waits for a core: timed inside the gate on 1,000,000
//! wallets, a batch held it 3.4 ms where SQLite itself (Python's `sqlite3`, same statements)
//! needs 2.1. Here sqlx lends the connection's handle, one hand-off, and the transaction's
//! statements run one after another on this thread.
//!
//! Only what a batch needs is wrapped: a statement with text, integer and NULL values bound to
//! its `?` or `$N` parameters, executed or read for one text column. The connection keeps
//! every setting sqlx opened it with (busy timeout, pragmas), and is never handed back to the
//! pool inside a transaction.

// The one place rotor calls SQLite's C API; each call says why it is sound.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_int};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use libsqlite3_sys as ffi;
use sqlx::Sqlite;
use sqlx::pool::PoolConnection;

use super::StoreError;
use super::shared::Value;

/// Runs `work` in one transaction on `connection`'s handle: committed if it returns `Ok`,
/// rolled back otherwise. A connection left inside a transaction (its rollback failed too) is
/// closed rather than handed back to the pool.
///
/// The transaction runs on the runtime's thread, as the component's calls do: a few
/// milliseconds for a batch, behind this process's write gate, so one thread at a time. Where
/// another process holds SQLite's write lock, SQLite waits for it here, up to the connection's
/// busy timeout. (Handing the thread's other tasks away first, with `block_in_place`, spread
/// the process over more threads and their allocator arenas: peak RSS rose from 52 to 66 MiB
/// on 1,000,000 wallets.)
pub(super) async fn in_transaction<T>(
    mut connection: PoolConnection<Sqlite>,
    work: impl FnOnce(&mut Handle<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut lent = connection.lock_handle().await?;
    let mut handle = Handle { db: lent.as_raw_handle(), _lent: PhantomData };
    let outcome = handle
        .execute("BEGIN", &[])
        .and_then(|_| work(&mut handle))
        .and_then(|done| handle.execute("COMMIT", &[]).map(|_| done));
    if outcome.is_err() {
        // Fails harmlessly where SQLite already rolled the transaction back.
        let _ = handle.execute("ROLLBACK", &[]);
    }
    let stuck = handle.in_transaction();
    drop(lent);
    if stuck {
        drop(connection.detach());
    }
    outcome
}

/// A connection's handle, lent to this thread for one transaction. Made only by
/// [`in_transaction`], which keeps sqlx's loan (`LockedSqliteHandle`) for as long as the
/// handle is used, and hands it to its work by reference only.
pub(super) struct Handle<'l> {
    db: NonNull<ffi::sqlite3>,
    _lent: PhantomData<&'l mut ()>,
}

impl Handle<'_> {
    /// Runs `sql`, one statement with `params` bound (see [`value_index`]); returns the rows it
    /// changed.
    pub(super) fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64, StoreError> {
        let statement = self.prepare(sql, params)?;
        if statement.step()? != ffi::SQLITE_DONE {
            return Err(StoreError::Config(format!("`{}` returned rows", first_words(sql))));
        }
        drop(statement);
        // SAFETY: `db` is a live connection lent to this thread; the count is of the statement
        // just finished.
        Ok(unsafe { ffi::sqlite3_changes64(self.db.as_ptr()) } as u64)
    }

    /// Runs `sql`, a query with `params` bound (see [`value_index`]), and returns its first
    /// column's text values, row by row (NULLs left out).
    pub(super) fn texts(&mut self, sql: &str, params: &[Value<'_>]) -> Result<Vec<String>, StoreError> {
        let statement = self.prepare(sql, params)?;
        let mut texts = Vec::new();
        while statement.step()? == ffi::SQLITE_ROW {
            // SAFETY: the statement stands on a row; the text stays valid until the next step
            // and is copied before it.
            let text = unsafe {
                let text = ffi::sqlite3_column_text(statement.raw.as_ptr(), 0);
                if text.is_null() {
                    continue;
                }
                let len = ffi::sqlite3_column_bytes(statement.raw.as_ptr(), 0) as usize;
                std::slice::from_raw_parts(text, len)
            };
            texts.push(String::from_utf8_lossy(text).into_owned());
        }
        Ok(texts)
    }

    /// Whether a transaction is open on the connection.
    fn in_transaction(&self) -> bool {
        // SAFETY: `db` is a live connection lent to this thread.
        unsafe { ffi::sqlite3_get_autocommit(self.db.as_ptr()) == 0 }
    }

    fn prepare(&mut self, sql: &str, params: &[Value<'_>]) -> Result<Statement<'_>, StoreError> {
        let len = c_int::try_from(sql.len())
            .map_err(|_| StoreError::Config(format!("`{}` is too long for SQLite", first_words(sql))))?;
        let mut raw = ptr::null_mut();
        // SAFETY: `sql` is valid for `len` bytes, and SQLite writes the statement to `raw`.
        let code = unsafe {
            ffi::sqlite3_prepare_v2(self.db.as_ptr(), sql.as_ptr().cast(), len, &mut raw, ptr::null_mut())
        };
        check(self.db, code, sql)?;
        let raw = NonNull::new(raw)
            .ok_or_else(|| StoreError::Config(format!("`{}` holds no statement", first_words(sql))))?;
        let statement = Statement { raw, db: self.db, _handle: PhantomData };
        // SAFETY: the statement is live.
        let count = unsafe { ffi::sqlite3_bind_parameter_count(statement.raw.as_ptr()) };
        for at in 1..=count {
            let param = params.get(value_index(&statement, at)?).ok_or_else(|| {
                StoreError::Config(format!("`{}` takes more than {} values", first_words(sql), params.len()))
            })?;
            // SAFETY: the statement is live and `at` one of its parameters; SQLITE_TRANSIENT
            // makes SQLite copy the text before the call returns, so it need not outlive it.
            let code = unsafe {
                match param {
                    Value::Text(text) => ffi::sqlite3_bind_text64(
                        statement.raw.as_ptr(),
                        at,
                        text.as_ptr().cast(),
                        text.len() as u64,
                        ffi::SQLITE_TRANSIENT(),
                        ffi::SQLITE_UTF8 as u8,
                    ),
                    Value::Int(value) => ffi::sqlite3_bind_int64(statement.raw.as_ptr(), at, *value),
                    Value::Null => ffi::sqlite3_bind_null(statement.raw.as_ptr(), at),
                }
            };
            check(self.db, code, sql)?;
        }
        Ok(statement)
    }
}

/// A prepared statement, finalized when dropped.
struct Statement<'h> {
    raw: NonNull<ffi::sqlite3_stmt>,
    db: NonNull<ffi::sqlite3>,
    _handle: PhantomData<&'h mut ()>,
}

impl Statement<'_> {
    fn step(&self) -> Result<c_int, StoreError> {
        // SAFETY: the statement is live and its parameters are bound.
        let code = unsafe { ffi::sqlite3_step(self.raw.as_ptr()) };
        if matches!(code, ffi::SQLITE_ROW | ffi::SQLITE_DONE) {
            return Ok(code);
        }
        // SAFETY: the statement's own SQL, owned by SQLite while the statement lives.
        let sql = unsafe { CStr::from_ptr(ffi::sqlite3_sql(self.raw.as_ptr())) };
        Err(error(self.db, &sql.to_string_lossy()))
    }
}

impl Drop for Statement<'_> {
    fn drop(&mut self) {
        // SAFETY: finalized once, here, while its connection is still lent.
        unsafe { ffi::sqlite3_finalize(self.raw.as_ptr()) };
    }
}

/// Which of the values given parameter `at` of `statement` takes: `$N` (or `?N`) the N-th, as
/// sqlx binds them, so that the statements rotor shares with PostgreSQL read the same here; a
/// bare `?` the next in order.
fn value_index(statement: &Statement<'_>, at: c_int) -> Result<usize, StoreError> {
    // SAFETY: the statement is live and `at` one of its parameters; the name (NULL for a bare
    // `?`) is owned by the statement and read at once.
    let name = unsafe { ffi::sqlite3_bind_parameter_name(statement.raw.as_ptr(), at) };
    if name.is_null() {
        return Ok(at as usize - 1);
    }
    // SAFETY: a NUL-terminated name, as above.
    let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
    name.get(1..)
        .and_then(|number| number.parse::<usize>().ok())
        .filter(|&number| number >= 1)
        .map(|number| number - 1)
        .ok_or_else(|| StoreError::Config(format!("parameter `{name}` is not numbered ($N)")))
}

/// `Ok` for SQLite's codes of success, else [`error`].
fn check(db: NonNull<ffi::sqlite3>, code: c_int, sql: &str) -> Result<(), StoreError> {
    match code {
        ffi::SQLITE_OK | ffi::SQLITE_ROW | ffi::SQLITE_DONE => Ok(()),
        _ => Err(error(db, sql)),
    }
}

/// SQLite's last error on `db`: its message and extended code, with the statement's first
/// words (never its parameters, which hold ciphertexts).
fn error(db: NonNull<ffi::sqlite3>, sql: &str) -> StoreError {
    // SAFETY: `db` is a live connection lent to this thread; its message is copied at once.
    let (message, code) = unsafe {
        (
            CStr::from_ptr(ffi::sqlite3_errmsg(db.as_ptr())).to_string_lossy().into_owned(),
            ffi::sqlite3_extended_errcode(db.as_ptr()),
        )
    };
    StoreError::Sqlite { statement: first_words(sql), message, code }
}

/// What an error names of a statement: its first words.
fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(4).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

    use super::*;

    /// A pool of one connection on a fresh file holding `t(id TEXT PRIMARY KEY, v TEXT)`
    /// with rows a → 1 and b → 2; the folder is removed when the guard drops.
    async fn pool(name: &str) -> (SqlitePool, Folder) {
        let folder = Folder(std::env::temp_dir().join(format!("rotor-handle-{name}-{}", std::process::id())));
        std::fs::create_dir_all(&folder.0).unwrap();
        let options = SqliteConnectOptions::new().filename(folder.0.join("t.db")).create_if_missing(true);
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
        for statement in
            ["CREATE TABLE t (id TEXT PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES ('a', '1'), ('b', '2')"]
        {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        (pool, folder)
    }

    struct Folder(std::path::PathBuf);

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    async fn rows(pool: &SqlitePool) -> Vec<(String, Option<String>)> {
        sqlx::query_as("SELECT id, v FROM t ORDER BY id").fetch_all(pool).await.unwrap()
    }

    #[tokio::test]
    async fn a_transaction_commits_what_its_statements_did() {
        let (pool, _folder) = pool("commit").await;
        let found = in_transaction(pool.acquire().await.unwrap(), |handle| {
            let changed = handle.execute(
                "UPDATE t SET v = ? WHERE id IN (?, ?)",
                &[Value::Text("x"), Value::Text("a"), Value::Text("nobody")],
            )?;
            assert_eq!(changed, 1);
            assert_eq!(
                handle.execute("UPDATE t SET v = ? WHERE id = ?", &[Value::Null, Value::Text("b")])?,
                1
            );
            let texts =
                handle.texts("SELECT id FROM t WHERE v = ? OR v IS NULL ORDER BY id", &[Value::Text("x")])?;
            assert_eq!(
                handle.execute("UPDATE t SET v = v || ? WHERE id = ?", &[Value::Int(7), Value::Text("a")])?,
                1
            );
            Ok(texts)
        })
        .await
        .unwrap();
        assert_eq!(found, ["a", "b"]);
        assert_eq!(rows(&pool).await, [("a".into(), Some("x7".into())), ("b".into(), None)]);
    }

    #[tokio::test]
    async fn a_failed_statement_rolls_back_the_whole_transaction_and_names_no_parameter() {
        let (pool, _folder) = pool("rollback").await;
        let secret = "rotor:v9:c2VjcmV0LWtleS1ieXRlcw";
        let error = in_transaction(pool.acquire().await.unwrap(), |handle| {
            handle.execute("UPDATE t SET v = ? WHERE id = ?", &[Value::Text(secret), Value::Text("a")])?;
            // A second row with the first's id: the primary key refuses it.
            handle.execute("INSERT INTO t VALUES (?, ?)", &[Value::Text("b"), Value::Text(secret)])
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(error.contains("UNIQUE constraint failed: t.id"), "{error}");
        assert!(error.contains("INSERT INTO t VALUES"), "{error}");
        assert!(!error.contains(secret), "{error}");
        assert_eq!(rows(&pool).await, [("a".into(), Some("1".into())), ("b".into(), Some("2".into()))]);
        // The pool's one connection came back out of the transaction: a new one begins on it.
        let mut connection = pool.acquire().await.unwrap();
        sqlx::query("BEGIN").execute(&mut *connection).await.unwrap();
        sqlx::query("ROLLBACK").execute(&mut *connection).await.unwrap();
    }

    #[tokio::test]
    async fn numbered_parameters_take_their_numbered_value_whatever_their_order() {
        let (pool, _folder) = pool("numbered").await;
        in_transaction(pool.acquire().await.unwrap(), |handle| {
            let values = [Value::Text("b"), Value::Text("y")];
            assert_eq!(handle.execute("UPDATE t SET v = $2 WHERE id = $1", &values)?, 1);
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(rows(&pool).await[1], ("b".into(), Some("y".into())));
        let error = in_transaction(pool.acquire().await.unwrap(), |handle| {
            handle.execute("UPDATE t SET v = $3 WHERE id = $1", &[Value::Text("a"), Value::Text("z")])
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(error.contains("takes more than 2 values"), "{error}");
        assert_eq!(rows(&pool).await[0], ("a".into(), Some("1".into())));
    }

    #[tokio::test]
    async fn work_that_refuses_rolls_back_too() {
        let (pool, _folder) = pool("refuse").await;
        let refused = in_transaction(pool.acquire().await.unwrap(), |handle| {
            handle.execute("DELETE FROM t", &[])?;
            Err::<(), _>(StoreError::LeaseLost)
        })
        .await;
        assert!(matches!(refused, Err(StoreError::LeaseLost)), "{refused:?}");
        assert_eq!(rows(&pool).await.len(), 2);
    }

    #[tokio::test]
    async fn a_statement_that_does_not_parse_is_an_error_naming_it() {
        let (pool, _folder) = pool("parse").await;
        let error =
            in_transaction(pool.acquire().await.unwrap(), |handle| handle.execute("UPDATE nowhere SET", &[]))
                .await
                .unwrap_err();
        assert!(
            matches!(&error, StoreError::Sqlite { statement, .. } if statement == "UPDATE nowhere SET"),
            "{error:?}"
        );
        let error =
            in_transaction(pool.acquire().await.unwrap(), |handle| handle.execute("SELECT id FROM t", &[]))
                .await
                .unwrap_err()
                .to_string();
        assert!(error.contains("`SELECT id FROM t` returned rows"), "{error}");
    }
}
