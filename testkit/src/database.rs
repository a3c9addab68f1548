//! Throwaway databases: a SQLite file in a folder of its own, or a PostgreSQL database created
//! on the server `ROTOR_TEST_PG_URL` names; each holds an empty `wallets` table and is removed
//! when dropped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use rotor::store::{Database, NewRotation, WalletTable, create_sqlite_database};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A name no other test (or test process) uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Which database a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// The PostgreSQL the tests may create databases in. `scripts/test` provides one (this
/// machine's, or a throwaway cluster it starts) through ROTOR_TEST_PG_URL.
pub fn postgres_admin_url() -> String {
    std::env::var("ROTOR_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database with an empty `wallets` table, removed when dropped.
pub struct TestDb {
    /// Its URL, as rotor's DATABASE_URL takes it.
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// Creates the database; panics, saying how to provide one, if PostgreSQL is not there.
    pub async fn new(kind: Kind) -> TestDb {
        match kind {
            Kind::Sqlite => {
                let dir = std::env::temp_dir().join(unique("rotor_test"));
                std::fs::create_dir_all(&dir).unwrap();
                let url =
                    create_sqlite_database(&dir.join("wallets.db"), &WalletTable::default()).await.unwrap();
                TestDb { url, cleanup: Cleanup::Dir(dir) }
            }
            Kind::Postgres => {
                let admin_url = postgres_admin_url();
                let mut admin = PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
                    panic!(
                        "no PostgreSQL at {admin_url} ({e}). Run the tests with scripts/test, which starts \
                         one if none is running, or set ROTOR_TEST_PG_URL to a server where you may create databases"
                    )
                });
                let name = unique("rotor_test");
                sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                let url = match admin_url.rsplit_once('/') {
                    Some((server, _)) => format!("{server}/{name}"),
                    None => panic!("ROTOR_TEST_PG_URL must end in /DATABASE: {admin_url}"),
                };
                let mut db = PgConnection::connect(&url).await.unwrap();
                sqlx::query(AssertSqlSafe(WalletTable::default().create_statement()))
                    .execute(&mut db)
                    .await
                    .unwrap();
                db.close().await.unwrap();
                TestDb { url, cleanup: Cleanup::Postgres { admin_url, name } }
            }
        }
    }

    /// rotor's store on this database's `wallets` table.
    pub async fn connect(&self) -> Database {
        Database::connect(&self.url, WalletTable::default()).await.unwrap()
    }

    /// Every row's ciphertext, by id.
    pub async fn rows(&self) -> BTreeMap<String, String> {
        let db = self.connect().await;
        let mut rows = BTreeMap::new();
        let mut after: Option<String> = None;
        loop {
            let batch = db.scan(after.as_deref(), 1000).await.unwrap();
            let Some(last) = batch.last() else { break };
            after = Some(last.id.clone());
            rows.extend(batch.into_iter().map(|row| (row.id, row.ciphertext)));
        }
        rows
    }

    /// Runs one statement as the application would, outside rotor's store (creating or
    /// dropping a second table, say).
    pub async fn execute(&self, sql: &str) {
        let sql = AssertSqlSafe(sql.to_owned());
        let done = if self.url.starts_with("sqlite:") {
            let mut connection = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::query(sql).execute(&mut connection).await.map(drop)
        } else {
            let mut connection = PgConnection::connect(&self.url).await.unwrap();
            sqlx::query(sql).execute(&mut connection).await.map(drop)
        };
        done.unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Postgres { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop runs inside the test's runtime: do the async clean-up on a thread of its own.
                let _ = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    runtime.block_on(async {
                        if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                            let _ = sqlx::query(AssertSqlSafe(sql)).execute(&mut admin).await;
                        }
                    })
                })
                .join();
            }
        }
    }
}

/// A rotation from KEK v1 over `total` wallets, as a test records it in the journal directly.
pub fn new_rotation(total: i64, output_format: &str, restores: Option<i64>) -> NewRotation<'_> {
    NewRotation { from_version: 1, total, reencrypt: false, output_format, restores }
}
