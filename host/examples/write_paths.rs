//! Measures the ways a batch of wallet rewrites can reach the database, to justify the one rotor
//! uses (`Database::replace_batch`): one multi-row statement per batch against one prepared
//! UPDATE per row, both inside one transaction per batch, both compare-and-swap per row.
//!
//! Then the compare-and-swap's form, for a re-wrap: rotor's (the whole old ciphertext compared,
//! the whole new one written) against the one that touches only what a re-wrap changes, the new
//! head (the prefix and the base64 of the wrapped data key) spliced onto the rest of the row on
//! the condition that the row still starts with the old head. The second sends a tenth of the
//! bytes, but the database then cuts and joins strings instead of comparing and copying them:
//! on PostgreSQL it is the slower one; on SQLite, with both forms counting the rows they change
//! rather than returning their ids, it came out 5 to 9% faster, and rotor's SQLite store uses
//! it for re-wraps (`Span::Head` in the store; BENCHMARKS.md). Passes alternate between the two on the same envelopes, each moving every
//! wallet to the next KEK version in batches of rotor's default size, one transaction per
//! batch; the median of three each.
//!
//! `cargo run --release --example write_paths -- [ROWS] [POSTGRES_ADMIN_URL]`
//! (defaults: 20000 rows of 1800 bytes, then envelopes of a 1.3 KB wallet;
//! postgres://postgres@127.0.0.1:5432/postgres).
//! Each pass writes bytes that differ from what is stored: SQLite skips rewriting a record whose
//! bytes did not change, which would measure nothing.

use std::time::Instant;

use rotor::plan::BatchSize;
use rotor::store::{Database, Replacement, WalletRow, WalletTable, create_sqlite_database};
use rotor_codec::{DataKey, EnvelopeNonces, KEY_LEN, Kek, NONCE_LEN, rewrap_with, seal_with};
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
                read_at: None,
                heads: None,
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

// The compare-and-swap's form, for a re-wrap.

/// Passes of each form; the median is kept.
const PASSES: u32 = 3;

fn kek(version: u32) -> Kek {
    Kek::from_bytes([version as u8; KEY_LEN])
}

/// Envelopes under KEK v1 of a wallet the size of the bench's (a Fabric identity).
fn envelopes(count: usize) -> Vec<WalletRow> {
    let wallet = vec![b'w'; 1300];
    let nonces = EnvelopeNonces { wrap: [1; NONCE_LEN], data: [2; NONCE_LEN] };
    (0..count)
        .map(|i| {
            let id = format!("w{i:08}");
            let ciphertext = seal_with(&kek(1), 1, &id, &wallet, &DataKey::from_bytes([3; KEY_LEN]), nonces);
            WalletRow { id, ciphertext }
        })
        .collect()
}

/// Every row re-wrapped from `version` to the next; the batches as rotor's walk writes them.
fn rewrapped(rows: &[WalletRow], version: u32) -> Vec<Replacement> {
    rows.iter()
        .map(|row| Replacement {
            id: row.id.clone(),
            expected: row.ciphertext.clone(),
            replacement: rewrap_with(
                &kek(version),
                &kek(version + 1),
                version + 1,
                &row.id,
                &row.ciphertext,
                [4; NONCE_LEN],
            )
            .unwrap(),
            read_at: None,
            heads: None,
        })
        .collect()
}

/// The head-only compare-and-swap on PostgreSQL; on SQLite the same as a multi-row VALUES
/// statement (built in [`cas_pass`]).
const HEAD_POSTGRES: &str = "UPDATE wallets AS w SET ciphertext = v.head || substr(w.ciphertext, length(v.expected) + 1) \
     FROM UNNEST($1::text[], $2::text[], $3::text[]) AS v(id, expected, head) \
     WHERE w.id = v.id AND left(w.ciphertext, length(v.expected)) = v.expected RETURNING w.id";

/// The prefix and the base64 of the wrapped data key: what a re-wrap changes.
fn head(envelope: &str) -> &str {
    let prefix = envelope.match_indices(':').nth(1).expect("an envelope").0 + 1;
    &envelope[..prefix + 84]
}

/// One pass over `batches`, through rotor's store, or head only by hand.
async fn cas_pass(db: &Database, url: &str, batches: &[Vec<Replacement>], head_only: bool) -> f64 {
    let started = Instant::now();
    let mut written = 0;
    if !head_only {
        for batch in batches {
            written += db.replace_batch(batch, None).await.unwrap().replaced as usize;
        }
    } else if url.starts_with("postgres") {
        let mut connection = PgConnection::connect(url).await.unwrap();
        for batch in batches {
            let column = |f: fn(&Replacement) -> &str| batch.iter().map(f).collect::<Vec<&str>>();
            let mut tx = connection.begin().await.unwrap();
            let ids: Vec<String> = sqlx::query_scalar(HEAD_POSTGRES)
                .bind(column(|r| &r.id))
                .bind(column(|r| head(&r.expected)))
                .bind(column(|r| head(&r.replacement)))
                .fetch_all(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            written += ids.len();
        }
    } else {
        // On a connection set up as rotor's store sets its own (WAL, synchronous NORMAL).
        let options = url.parse::<sqlx::sqlite::SqliteConnectOptions>().unwrap();
        let options = options.synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
        let mut connection = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
        for batch in batches {
            let mut tx = connection.begin().await.unwrap();
            let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "UPDATE wallets SET ciphertext = v.column3 || substr(wallets.ciphertext, length(v.column2) + 1) FROM (",
            );
            query.push_values(batch, |mut values, r| {
                values.push_bind(&r.id).push_bind(head(&r.expected)).push_bind(head(&r.replacement));
            });
            query.push(
                ") AS v WHERE wallets.id = v.column1 AND substr(wallets.ciphertext, 1, length(v.column2)) = v.column2",
            );
            // Counted, not returned, as rotor's own SQLite store counts (no conflicts here).
            let counted = query.build().execute(&mut *tx).await.unwrap().rows_affected();
            tx.commit().await.unwrap();
            written += counted as usize;
        }
    }
    let rows: usize = batches.iter().map(Vec::len).sum();
    assert_eq!(written, rows, "every row is replaced");
    rows as f64 / started.elapsed().as_secs_f64()
}

/// Alternating re-wrap passes on `db` (its rows replaced by envelopes): the median rate of
/// rotor's whole-ciphertext compare-and-swap and of the head-only one.
async fn compare_forms(db: &Database, url: &str, count: usize) -> (f64, f64) {
    let mut rows = envelopes(count);
    db.put_many(&rows).await.unwrap();
    let batch = BatchSize::DEFAULT.get() as usize;
    let (mut head, mut whole) = (Vec::new(), Vec::new());
    for version in 1..=2 * PASSES {
        let replacements = rewrapped(&rows, version);
        let batches: Vec<Vec<Replacement>> = replacements.chunks(batch).map(<[_]>::to_vec).collect();
        let head_only = version % 2 == 1;
        let rate = cas_pass(db, url, &batches, head_only).await;
        if head_only {
            head.push(rate)
        } else {
            whole.push(rate)
        }
        for (row, done) in rows.iter_mut().zip(replacements) {
            row.ciphertext = done.replacement;
        }
    }
    let median = |rates: &mut Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    (median(&mut whole), median(&mut head))
}

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
    let sqlite_forms = compare_forms(&db, &url, count).await;
    drop(db);
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
    let postgres_forms = compare_forms(&db, &url, count).await;
    drop((db, connection));
    admin.execute(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).await.unwrap();

    println!();
    println!(
        "{count} re-wraps, batches of {}, median of {PASSES} alternating passes each; rows/s (higher is better)",
        BatchSize::DEFAULT.get()
    );
    println!("| database | whole ciphertext (rotor) | head only | head ÷ whole |");
    println!("|---|---:|---:|---:|");
    for (label, (whole, head)) in [("SQLite (WAL)", sqlite_forms), ("PostgreSQL", postgres_forms)] {
        println!("| {label} | {whole:.0} | {head:.0} | {:.2}x |", head / whole);
    }
}
