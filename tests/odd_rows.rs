//! Rows a real table holds besides wallets — a ciphertext stored as a BLOB, NULL ciphertexts,
//! NULL ids — and a valid wallet too large to write back under `limits.max-value-kib`: each is
//! reported by id with what to do, left byte for byte as it was, and every other wallet moves;
//! the rotation finishes (exit 3) and the next one does the same. And tables whose names need
//! quoting (`"Wallets"("walletId", "encryptedData")`, Sequelize's default) work end to end.

use std::collections::BTreeMap;

use rotor::demo::wallets::{fabric_identity, legacy_wallet};
use rotor::store::{Database, WalletTable};
use rotor_codec::{Format, Kek};
use rotor_testkit::{Kind, Wallets, World, failure, json, json_success, on_sqlite_and_postgres, text};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqliteConnection};

/// A connection of our own, to set up and read rows the way an application would, without
/// going through rotor's store.
enum Raw {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl Raw {
    async fn connect(world: &World) -> Raw {
        if world.db.url.starts_with("sqlite:") {
            Raw::Sqlite(SqliteConnection::connect(&world.db.url).await.unwrap())
        } else {
            Raw::Postgres(PgConnection::connect(&world.db.url).await.unwrap())
        }
    }

    async fn execute(&mut self, sql: &str) {
        let sql = AssertSqlSafe(sql.to_owned());
        match self {
            Raw::Sqlite(c) => sqlx::query(sql).execute(c).await.map(drop),
            Raw::Postgres(c) => sqlx::query(sql).execute(c).await.map(drop),
        }
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Inserts a row whose ciphertext is NULL (`None`) or text, with a NULL id (`None`) or not.
    async fn insert(&mut self, table: &str, id: Option<&str>, ciphertext: Option<&str>) {
        let sql = AssertSqlSafe(format!("INSERT INTO {table} (id, ciphertext) VALUES ($1, $2)"));
        match self {
            Raw::Sqlite(c) => sqlx::query(sql).bind(id).bind(ciphertext).execute(c).await.map(drop),
            Raw::Postgres(c) => sqlx::query(sql).bind(id).bind(ciphertext).execute(c).await.map(drop),
        }
        .unwrap();
    }

    /// Inserts a row whose ciphertext is a BLOB (SQLite keeps any type in any column).
    async fn insert_blob(&mut self, table: &str, id: &str, bytes: &[u8]) {
        let Raw::Sqlite(c) = self else { panic!("BLOB ciphertexts are a SQLite matter") };
        let sql = AssertSqlSafe(format!("INSERT INTO {table} (id, ciphertext) VALUES ($1, $2)"));
        sqlx::query(sql).bind(id).bind(bytes).execute(c).await.unwrap();
    }

    /// Rows of two text columns.
    async fn pairs(&mut self, sql: &str) -> Vec<(String, String)> {
        let sql = AssertSqlSafe(sql.to_owned());
        match self {
            Raw::Sqlite(c) => sqlx::query_as(sql).fetch_all(c).await,
            Raw::Postgres(c) => sqlx::query_as(sql).fetch_all(c).await,
        }
        .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn count(&mut self, table: &str) -> u64 {
        let sql = AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
        let count: i64 = match self {
            Raw::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await,
            Raw::Postgres(c) => sqlx::query_scalar(sql).fetch_one(c).await,
        }
        .unwrap();
        count as u64
    }

    /// SQL's literal of any value, exact to the byte: `'text'`, `X'0102'` (a BLOB), `NULL`.
    fn quote(&self, expression: &str) -> String {
        match self {
            Raw::Sqlite(_) => format!("quote({expression})"),
            Raw::Postgres(_) => format!("quote_nullable({expression})"),
        }
    }

    /// Every row as (id literal, ciphertext literal), in a stable order.
    async fn literals(&mut self, table: &str, id: &str, ciphertext: &str) -> Vec<(String, String)> {
        let sql = format!("SELECT {}, {} FROM {table} ORDER BY 1, 2", self.quote(id), self.quote(ciphertext));
        self.pairs(&sql).await
    }
}

/// What `rotor status` should count, classified here from the raw values rather than by
/// rotor's SQL: `null`, `not-text`, the version a `rotor:vN:` prefix names, else `legacy`.
fn expected_counts(literals: &[(String, String)]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for (_, ciphertext) in literals {
        let label = if ciphertext == "NULL" {
            "null".to_owned()
        } else if ciphertext.starts_with("X'") {
            "not-text".to_owned()
        } else if let Some(rest) = ciphertext.strip_prefix("'rotor:v") {
            rest.split(':').next().unwrap().to_owned()
        } else {
            "legacy".to_owned()
        };
        *counts.entry(label).or_insert(0u64) += 1;
    }
    counts
}

/// Each normal wallet (id `user-…`) is an envelope under KEK `version` and opens, with the KEK
/// as Vault archives it, to what was enrolled.
async fn every_wallet_on(
    world: &World,
    raw: &mut Raw,
    table: &str,
    (id, ciphertext): (&str, &str),
    version: u32,
    expected: &Wallets,
) {
    let kek = world.kek(version).await;
    let sql = format!("SELECT {id}, {ciphertext} FROM {table} WHERE {id} LIKE 'user-%' ORDER BY 1");
    let rows: BTreeMap<String, String> = raw.pairs(&sql).await.into_iter().collect();
    assert_eq!(rows.len(), expected.len(), "wallets appeared or vanished");
    for (wallet, plaintext) in expected {
        let sealed = &rows[wallet];
        assert_eq!(rotor_codec::inspect(sealed), Ok(Format::Envelope { kek_version: version }), "{wallet}");
        let opened = rotor_codec::open(&kek, wallet, sealed).unwrap_or_else(|e| panic!("{wallet}: {e}"));
        assert_eq!(opened.as_slice(), plaintext.as_slice(), "{wallet}");
    }
}

/// `count` Fabric identities in the seed's legacy format, written through rotor's store into
/// `table` (so that its quoting is exercised too).
async fn enroll(world: &World, table: &WalletTable, kek: &Kek, count: usize) -> Wallets {
    let (wallets, rows) = rotor_testkit::legacy_wallets(kek, count);
    Database::connect(&world.db.url, table.clone()).await.unwrap().put_many(&rows).await.unwrap();
    wallets.into_iter().collect()
}

fn failures(report: &Value, list: &str) -> BTreeMap<String, String> {
    report[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {report:#}"))
        .iter()
        .map(|f| (f["id"].as_str().unwrap().to_owned(), f["reason"].as_str().unwrap().to_owned()))
        .collect()
}

/// The reasons rotor gives each odd row say what is odd and what to do.
fn assert_reasons(found: &BTreeMap<String, String>, kind: Kind, big: bool) {
    let null = &found["null-ct-1"];
    assert!(null.contains("`ciphertext` is NULL") && null.contains("delete the row"), "{null}");
    assert!(found["null-ct-2"].contains("is NULL"), "{found:?}");
    let ids = &found["(null id)"];
    assert!(ids.contains("2 row(s) have a NULL `id`") && ids.contains("give each a text id"), "{ids}");
    if kind == Kind::Sqlite {
        let blob = &found["blob-ct"];
        assert!(blob.contains("a blob of") && blob.contains("CAST(\"ciphertext\" AS TEXT)"), "{blob}");
    }
    if big {
        let big = &found["big-wallet"];
        assert!(big.contains("over the limit of 1024 KiB") && big.contains("max-value-kib"), "{big}");
        assert!(big.contains("rotor.toml") && big.contains("old KEK"), "{big}");
    }
}

async fn odd_rows_are_reported_and_left_alone(kind: Kind) {
    let (world, first) = World::with_kek(kind).await;
    let mut raw = Raw::connect(&world).await;
    // As an application may have made it: no NOT NULL, ids unique but not a primary key.
    raw.execute("CREATE TABLE odd_wallets (id TEXT UNIQUE, ciphertext TEXT)").await;
    let table = WalletTable::new("odd_wallets", "id", "ciphertext").unwrap();
    let expected = enroll(&world, &table, &first, 300).await;

    // A valid wallet whose ciphertext is about 2 MiB: it opens, but its replacement is over
    // the default limit of 1024 KiB.
    let mut big = Vec::new();
    while big.len() < 1536 << 10 {
        big.extend_from_slice(&fabric_identity("big-wallet"));
    }
    raw.insert("odd_wallets", Some("big-wallet"), Some(&legacy_wallet(&first, &big))).await;
    // Two NULL ciphertexts next to each other: with batches of 2, one page holds odd rows only.
    raw.insert("odd_wallets", Some("null-ct-1"), None).await;
    raw.insert("odd_wallets", Some("null-ct-2"), None).await;
    for n in 0..2 {
        let sealed = legacy_wallet(&first, &fabric_identity(&format!("nameless-{n}")));
        raw.insert("odd_wallets", None, Some(&sealed)).await;
    }
    let mut odd_ids = vec!["(null id)", "null-ct-1", "null-ct-2"];
    if kind == Kind::Sqlite {
        // A Node application writing a Buffer stores the wallet's text as a BLOB.
        let sealed = legacy_wallet(&first, &fabric_identity("blob-ct"));
        raw.insert_blob("odd_wallets", "blob-ct", sealed.as_bytes()).await;
        odd_ids.insert(1, "blob-ct");
    }
    let rows_total = raw.count("odd_wallets").await;
    // Rows rotor must leave alone, as exact SQL literals.
    let untouched_sql = format!(
        "SELECT {}, {} FROM odd_wallets WHERE id IS NULL OR id NOT LIKE 'user-%' ORDER BY 1, 2",
        raw.quote("id"),
        raw.quote("ciphertext")
    );
    let untouched = raw.pairs(&untouched_sql).await;
    assert_eq!(
        untouched.len(),
        odd_ids.len() + 2,
        "{:?}",
        untouched.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    let rotor = || {
        let mut command = world.rotor();
        command.args(["--table", "odd_wallets"]);
        command
    };

    // validate: the component's own scan (one worker) and the shared scan (several), with
    // batches small enough that a page holds odd rows only.
    for workers in ["1", "2"] {
        let (out, report) = json(rotor().args(["validate", "--workers", workers, "--batch-size", "2"]));
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        assert_eq!(report["invalid_ids"], json!(odd_ids), "{report:#}");
        assert_eq!((report["total"].as_u64(), report["valid"].as_u64()), (Some(rows_total), Some(301)));
        assert_reasons(&failures(&report, "failures"), kind, false);
    }

    // audit lists them among the wallets that do not open; `open` says what the row holds.
    let (out, audit) = json(rotor().arg("audit"));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let unopenable = failures(&audit, "unopenable");
    assert_eq!(unopenable.keys().map(String::as_str).collect::<Vec<_>>(), odd_ids, "{audit:#}");
    assert_eq!(audit["total"], rows_total, "{audit:#}");
    let (out, _) = json(rotor().args(["open", "null-ct-1"]));
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1);
    assert!(stderr.contains("wallet \"null-ct-1\" cannot be opened: its `ciphertext` is NULL"), "{stderr}");

    // A dry run lists them too, and --strict refuses before storing anything.
    let (out, report) = json(rotor().args(["rotate", "--dry-run", "--batch-size", "2"]));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(report["failed_ids"], json!(odd_ids), "{report:#}");
    let (out, _) = json(rotor().args(["rotate", "--strict"]));
    let (code, stderr) = failure(&out);
    assert_eq!(code, 1);
    assert!(stderr.contains("--strict") && stderr.contains("null-ct-1"), "{stderr}");
    assert_eq!(
        world.vault_client().metadata("ibn/encryption-key").await.unwrap().unwrap().current_version,
        1
    );

    let mut failed_ids = odd_ids.clone();
    failed_ids.push("big-wallet");
    failed_ids.sort();
    for (round, version) in [(1, 2u32), (2, 3)] {
        let (out, report) = json(rotor().args(["rotate", "--batch-size", "2"]));
        assert_eq!(out.status.code(), Some(3), "round {round}: {}", text(&out.stderr));
        assert_eq!(report["to_version"], version, "{report:#}");
        assert_eq!(report["failed_ids"], json!(failed_ids), "round {round}: {report:#}");
        assert_eq!(
            (report["rotated"].as_u64(), report["unchanged"].as_u64()),
            (Some(300), Some(0)),
            "{report:#}"
        );
        assert_reasons(&failures(&report, "failures"), kind, true);

        every_wallet_on(&world, &mut raw, "odd_wallets", ("id", "ciphertext"), version, &expected).await;
        assert_eq!(raw.pairs(&untouched_sql).await, untouched, "round {round}: an odd row was changed");

        // status counts what the table holds, NULLs and BLOBs apart from legacy wallets.
        let status = json_success(rotor().arg("status"));
        let literals = raw.literals("odd_wallets", "id", "ciphertext").await;
        assert_eq!(status["key_versions"], json!(expected_counts(&literals)), "{status:#}");
        assert_eq!(status["total"], rows_total);
        assert!(status["unfinished"].is_null(), "round {round}: the rotation did not finish: {status:#}");

        // The journal counts every row the rotation left behind.
        let history = json_success(rotor().arg("history"));
        let left_behind = failed_ids.len() as u64 + 1; // "(null id)" stands for two rows
        assert_eq!(
            (history[0]["status"].as_str(), history[0]["to_version"].as_u64(), history[0]["failed"].as_u64()),
            (Some("finished"), Some(u64::from(version)), Some(left_behind)),
            "{history:#}"
        );
    }

    // Once the limit is raised (as the reason says), the big wallet moves too.
    let config = world.scratch.join("rotor.toml");
    std::fs::write(&config, "[limits]\nmax-value-kib = 4096\n").unwrap();
    let (out, report) = json(rotor().arg("--config").arg(&config).args(["rotate"]));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(report["failed_ids"], json!(odd_ids), "{report:#}");
    assert_eq!(report["rotated"], 301, "{report:#}");
    let big_now = raw.pairs("SELECT id, ciphertext FROM odd_wallets WHERE id = 'big-wallet'").await;
    let opened = rotor_codec::open(&world.kek(4).await, "big-wallet", &big_now[0].1).unwrap();
    assert_eq!(opened.as_slice(), big.as_slice());
}

on_sqlite_and_postgres!(odd_rows_are_reported_and_left_alone);

/// Sequelize's default names: a table and columns with capitals, which PostgreSQL keeps only
/// when they are quoted.
async fn quoted_names(kind: Kind) {
    let (world, first) = World::with_kek(kind).await;
    let mut raw = Raw::connect(&world).await;
    // SQLite's names ignore case: the test database's own `wallets` would be the same table.
    raw.execute("DROP TABLE wallets").await;
    raw.execute(
        r#"CREATE TABLE "Wallets" ("walletId" VARCHAR(255) PRIMARY KEY, "encryptedData" TEXT NOT NULL)"#,
    )
    .await;
    let table = WalletTable::new("Wallets", "walletId", "encryptedData").unwrap();
    let expected = enroll(&world, &table, &first, 30).await;
    let rotor = || {
        let mut command = world.rotor();
        command.args([
            "--table",
            "Wallets",
            "--id-column",
            "walletId",
            "--ciphertext-column",
            "encryptedData",
        ]);
        command
    };

    let report = json_success(rotor().arg("validate"));
    assert_eq!(
        (report["valid"].as_u64(), report["key_versions"].clone()),
        (Some(30), json!({ "legacy": 30 }))
    );

    let report = json_success(rotor().arg("rotate"));
    assert_eq!(
        (report["to_version"].as_u64(), report["rotated"].as_u64()),
        (Some(2), Some(30)),
        "{report:#}"
    );
    every_wallet_on(&world, &mut raw, r#""Wallets""#, (r#""walletId""#, r#""encryptedData""#), 2, &expected)
        .await;

    let status = json_success(rotor().arg("status"));
    assert_eq!((status["key_versions"].clone(), status["total"].as_u64()), (json!({ "2": 30 }), Some(30)));

    let report = json_success(rotor().arg("validate"));
    assert_eq!((report["valid"].as_u64(), report["key_versions"].clone()), (Some(30), json!({ "2": 30 })));
    let (_, history) = json(rotor().arg("history"));
    assert_eq!((history[0]["rotated"].as_u64(), history[0]["failed"].as_u64()), (Some(30), Some(0)));

    if kind == Kind::Postgres {
        // A column rotor cannot read as text is refused at once, naming it, its type and the fix.
        raw.execute(r#"CREATE TABLE "Blobs" ("id" TEXT PRIMARY KEY, "data" BYTEA)"#).await;
        let (out, _) =
            json(world.rotor().args(["--table", "Blobs", "--ciphertext-column", "data", "validate"]));
        let (code, stderr) = failure(&out);
        assert_eq!(code, 1);
        for needed in
            ["column `data` of table `Blobs` is bytea", "--ciphertext-column", "ALTER TABLE \"Blobs\""]
        {
            assert!(stderr.contains(needed), "{needed:?} not in: {stderr}");
        }
    }
}

on_sqlite_and_postgres!(quoted_names);

/// Item 3 on its own, in the default table: a valid wallet whose replacement is over
/// `limits.max-value-kib` is listed and left on its old KEK; the rotation still finishes.
#[tokio::test(flavor = "multi_thread")]
async fn wallet_over_the_value_limit_is_left_behind_sqlite() {
    let (world, first) = World::with_kek(Kind::Sqlite).await;
    let expected = enroll(&world, &WalletTable::default(), &first, 50).await;
    let big = fabric_identity("big").repeat(1200);
    let sealed = legacy_wallet(&first, &big);
    world.db.connect().await.put("big-wallet", &sealed).await.unwrap();

    let report = json_success(world.rotor().arg("validate"));
    assert_eq!(report["valid"], 51);
    for (round, version) in [(1, 2u32), (2, 3)] {
        let (out, report) = json(world.rotor().arg("rotate"));
        assert_eq!(out.status.code(), Some(3), "round {round}: {}", text(&out.stderr));
        assert_eq!(
            (report["rotated"].as_u64(), report["failed_ids"].clone()),
            (Some(50), json!(["big-wallet"]))
        );
        assert!(failures(&report, "failures")["big-wallet"].contains("max-value-kib"), "{report:#}");
        let mut raw = Raw::connect(&world).await;
        every_wallet_on(&world, &mut raw, "wallets", ("id", "ciphertext"), version, &expected).await;
        assert_eq!(world.rows().await["big-wallet"], sealed, "the big wallet was changed");
        let (_, status) = json(world.rotor().arg("status"));
        assert!(status["unfinished"].is_null(), "{status:#}");
        assert_eq!(status["key_versions"], json!({ version.to_string(): 50, "legacy": 1 }), "{status:#}");
        let (_, history) = json(world.rotor().arg("history"));
        assert_eq!(
            (history[0]["status"].as_str(), history[0]["failed"].as_u64()),
            (Some("finished"), Some(1))
        );
    }
}

// Rows that open under no key: a wallet overwritten with another wallet's ciphertext (it names
// a KEK version, but is bound to another id) and a legacy-looking text nothing opens. No
// rotation can move them, so they would block every destruction for good; `rotor quarantine`
// sets them aside without touching them, and the receipt says what became unreadable.

async fn rows_that_open_under_no_key_are_set_aside(kind: Kind) {
    let (world, kek) = World::with_kek(kind).await;
    let mut wallets = world.enroll_legacy(&kek, 12).await;
    json_success(world.rotor().arg("rotate"));
    let rows = world.rows().await;
    let ids: Vec<String> = rows.keys().cloned().collect();
    let (copied, garbage) = (ids[3].clone(), "zz-garbage".to_owned());
    let db = world.db.connect().await;
    db.put(&copied, &rows[&ids[4]]).await.unwrap();
    db.put(&garbage, "bm90IGEgd2FsbGV0IGF0IGFsbCwganVzdCBzb21lIHRleHQgaGVyZQ==").await.unwrap();
    wallets.remove(&copied);
    let damaged = [
        (copied.clone(), rows[&ids[4]].clone()),
        (garbage.clone(), "bm90IGEgd2FsbGV0IGF0IGFsbCwganVzdCBzb21lIHRleHQgaGVyZQ==".into()),
    ];

    // The rotation cannot move them (exit 3): one row stays on v2, the other names no version.
    let (out, _) = json(world.rotor().arg("rotate"));
    assert_eq!(out.status.code(), Some(3));
    let refused = |out: &std::process::Output, phrases: &[&str]| {
        let (code, said) = failure(out);
        assert_eq!(code, 1, "{said}");
        for phrase in phrases.iter().chain(&["rotor quarantine --dry-run", "nothing was destroyed"]) {
            assert!(said.contains(phrase), "{phrase:?} not in: {said}");
        }
    };
    let destroy_v2 = || world.rotor().args(["destroy", "v2", "--dry-run"]).output().unwrap();
    let still_named = "1 row(s) of table `wallets` still name it";
    refused(&destroy_v2(), &[still_named]);

    // A dry run names both, with why, and records nothing.
    let found = json_success(world.rotor().args(["quarantine", "--dry-run"]));
    let named = |found: &Value| -> Vec<(String, String, String)> {
        found["set_aside"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let field = |f: &str| r[f].as_str().unwrap().to_owned();
                (field("table"), field("id"), field("kek_version"))
            })
            .collect()
    };
    assert_eq!(
        named(&found),
        [
            ("wallets".into(), copied.clone(), "2".into()),
            ("wallets".into(), garbage.clone(), "legacy".into())
        ],
        "{found}"
    );
    assert_eq!((found["checked"].as_u64(), found["dry_run"].as_bool()), (Some(2), Some(true)), "{found}");
    assert!(found["set_aside"].to_string().contains("opens under none"), "{found}");
    assert!(found.get("ciphertext").is_none() && !found.to_string().contains("bm90IGEgd2FsbGV0"), "{found}");
    assert_eq!(json_success(world.rotor().args(["quarantine", "--list"]))["rows"], json!([]));
    refused(&destroy_v2(), &[still_named]);

    // Set aside: v2 is free; the rows themselves are exactly as they were.
    let found = json_success(world.rotor().arg("quarantine"));
    assert_eq!(named(&found).len(), 2, "{found}");
    let again = json_success(world.rotor().arg("quarantine"));
    assert_eq!(
        (again["set_aside"].as_array().unwrap().len(), again["already"].as_u64()),
        (0, Some(2)),
        "{again}"
    );
    let rows_now = world.rows().await;
    for (id, ciphertext) in &damaged {
        assert_eq!(&rows_now[id], ciphertext, "{id} was changed");
    }
    let keys = json_success(world.rotor().arg("keys"));
    let v2 = keys["versions"].as_array().unwrap().iter().find(|v| v["version"] == 2).unwrap().clone();
    assert_eq!(
        (v2["rows"].clone(), v2["quarantined"].clone()),
        (json!({}), json!({ "wallets": 1 })),
        "{keys}"
    );
    assert_eq!(keys["unversioned_rows"], json!({ "wallets": { "legacy (set aside)": 1 } }), "{keys}");
    json_success(world.rotor().args(["destroy", "v2", "--dry-run"]));

    // A row that changes after it was set aside counts again, until it is set aside anew.
    db.put(&garbage, "c3RpbGwgbm90IGEgd2FsbGV0LCBqdXN0IG90aGVyIHRleHQgaGVyZSE=").await.unwrap();
    refused(&destroy_v2(), &["1 row(s) of table `wallets` name no KEK version (legacy)"]);
    let listed = json_success(world.rotor().args(["quarantine", "--list"]));
    let states: Vec<(&str, &str)> = listed["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [(copied.as_str(), "set-aside"), (garbage.as_str(), "changed")], "{listed}");
    db.put(&garbage, &damaged[1].1).await.unwrap();
    // Released, a row blocks again; an id that is not set aside is an error.
    let released = json_success(world.rotor().args(["quarantine", "--release", &copied]));
    assert_eq!(released["records"].as_u64(), Some(1), "{released}");
    refused(&destroy_v2(), &[still_named]);
    let out = world.rotor().args(["quarantine", "--release", "nobody"]).output().unwrap();
    let (code, said) = failure(&out);
    assert!(code == 1 && said.contains("no row \"nobody\" is set aside"), "{said}");
    json_success(world.rotor().arg("quarantine"));

    // Prune destroys v1 and v2; v2's receipt lists the row set aside, now unreadable for good.
    let pruned = json_success(world.rotor().args(["prune", "--keep", "1"]));
    assert_eq!(pruned["destroyed"], json!([1, 2]), "{pruned}");
    let receipt = |version: u64| {
        let versions = pruned["receipt"]["versions"].as_array().unwrap();
        versions
            .iter()
            .find(|v| v["version"] == version)
            .unwrap_or_else(|| panic!("no v{version}: {pruned}"))
            .clone()
    };
    assert_eq!(receipt(1).get("quarantined"), None, "{pruned}");
    assert_eq!(receipt(2)["quarantined"], json!({ "wallets": 1 }), "{pruned}");
    let rows_now = world.rows().await;
    assert_eq!(rows_now.len(), wallets.len() + 2, "rows appeared or vanished");
    for (id, ciphertext) in &damaged {
        assert_eq!(&rows_now[id], ciphertext, "{id} was changed");
    }
    let v3 = world.kek(3).await;
    for (id, plaintext) in &wallets {
        let opened = rotor_codec::open(&v3, id, &rows_now[id]).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(opened.as_slice(), plaintext.as_slice(), "{id}");
    }
    let listed = json_success(world.rotor().args(["quarantine", "--list"]));
    assert_eq!(listed["rows"].as_array().unwrap().len(), 2, "the records went: {listed}");
}

on_sqlite_and_postgres!(rows_that_open_under_no_key_are_set_aside);
