//! Measures the ways a batch of wallet rewrites can reach the database, to justify the one rotor
//! uses (`Database::replace_batch`): one multi-row statement per batch against one prepared
//! UPDATE per row, both inside one transaction per batch, both compare-and-swap per row.
//!
//! `cargo run --release --example write_paths -- [ROWS] [POSTGRES_ADMIN_URL]`
//! (defaults: 20000 rows of 1800 bytes; postgres://postgres@127.0.0.1:5432/postgres).
//! Each pass writes bytes that differ from what is stored: SQLite skips rewriting a record whose
//! bytes did not change, which would measure nothing.

use std::time::Instant;

use rotor::store::{Database, Replacement, WalletRow, WalletTable, create_sqlite_database};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, SqliteConnection};

const BATCH: usize = 1000;
const ROW_BYTES: usize = 1800;

fn ciphertext(id: usize, pass: u8) -> String {
    let mut text = format!("{pass:02}-{id:08}-");
    text.extend(std::iter::repeat_n(char::from(b'a' + pass % 26), ROW_BYTES - text.len()));
    text
}

fn rows(count: usize) -> Vec<WalletRow> {
    (0..count).map(|i| WalletRow { id: format!("w{i:08}"), ciphertext: ciphertext(i, 0) }).collect()
}

/// rotor's path: one statement per batch (VALUES on SQLite, UNNEST on PostgreSQL).
async fn multi_row(db: &Database, count: usize, pass: u8) -> f64 {
    let started = Instant::now();
    for chunk in (0..count).collect::<Vec<_>>().chunks(BATCH) {
        let batch: Vec<Replacement> = chunk
            .iter()
            .map(|&i| Replacement {
                id: format!("w{i:08}"),
                expected: ciphertext(i, pass - 1),
                replacement: ciphertext(i, pass),
            })
            .collect();
        let outcome = db.replace_batch(&batch, None).await.unwrap();
        assert_eq!(outcome.replaced as usize, batch.len());
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// The alternative: the same compare-and-swap UPDATE prepared once and run per row.
macro_rules! per_row {
    ($connection:expr, $count:expr, $pass:expr, $sql:expr) => {{
        let started = Instant::now();
        for chunk in (0..$count).collect::<Vec<_>>().chunks(BATCH) {
            let mut tx = $connection.begin().await.unwrap();
            for &i in chunk {
                let done = sqlx::query($sql)
                    .bind(ciphertext(i, $pass))
                    .bind(format!("w{i:08}"))
                    .bind(ciphertext(i, $pass - 1))
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                assert_eq!(done.rows_affected(), 1);
            }
            tx.commit().await.unwrap();
        }
        $count as f64 / started.elapsed().as_secs_f64()
    }};
}

const UPDATE_ONE: &str = "UPDATE wallets SET ciphertext = $1 WHERE id = $2 AND ciphertext = $3";

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map_or(20_000, |n| n.parse().expect("ROWS is a number"));
    let admin_url = args.next().unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let table = WalletTable::default();
    println!("{count} rows of {ROW_BYTES} bytes, {BATCH} per transaction; rows/s (higher is better)");
    println!("| database | one statement per batch (rotor) | one prepared UPDATE per row |");
    println!("|---|---|---|");

    let dir = std::env::temp_dir().join(format!("rotor-write-paths-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = create_sqlite_database(&dir.join("w.db"), &table).await.unwrap();
    let db = Database::connect(&url, table.clone()).await.unwrap();
    db.put_many(&rows(count)).await.unwrap();
    let fast = multi_row(&db, count, 1).await;
    let mut connection = SqliteConnection::connect(&url).await.unwrap();
    let slow = per_row!(connection, count, 2, UPDATE_ONE);
    println!("| SQLite (WAL) | {fast:.0} | {slow:.0} ({:.1}x slower) |", fast / slow);
    std::fs::remove_dir_all(&dir).unwrap();

    let name = format!("rotor_write_paths_{}", std::process::id());
    let mut admin = PgConnection::connect(&admin_url).await.expect("a PostgreSQL to measure against");
    admin.execute(AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    let mut connection = PgConnection::connect(&url).await.unwrap();
    connection.execute(AssertSqlSafe(table.create_statement())).await.unwrap();
    let db = Database::connect(&url, table).await.unwrap();
    db.put_many(&rows(count)).await.unwrap();
    let fast = multi_row(&db, count, 1).await;
    let slow = per_row!(connection, count, 2, UPDATE_ONE);
    println!("| PostgreSQL | {fast:.0} | {slow:.0} ({:.1}x slower) |", fast / slow);
    drop((db, connection));
    admin.execute(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).await.unwrap();
}
