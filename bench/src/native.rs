//! The bench's native baselines. [`rotate`]: the rotation's work with rotor's crypto core
//! (`rotor-codec`) compiled into this process instead of running in the sandbox, over the same
//! walk (key ranges, read-ahead, one worker per core), the same batches, the same
//! compare-and-swap writes and the same final sweep; what it saves is the cost of the sandbox
//! (copying batches across the component boundary, calls into the host for each key operation,
//! the host's check of every write). [`read_and_open`]: what `rotor validate` does, as the
//! plainest program would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rotor_codec::Kek;
use tokio::task::JoinSet;

use crate::coordination::{NotRewrapped, SweepParts, Walk, WalkSpec, WorkerBatches};
use crate::progress::Reporter;
use crate::store::{Database, NewRotation, RunIdentity};

/// Keys of one native rotation: every wallet is on `from`, and moves to `to`.
pub struct NativeKeys {
    pub from: (u32, Kek),
    pub to: (u32, Kek),
}

/// Moves every wallet from `keys.from` to `keys.to` as `rotor rotate` would (re-wrapping the
/// data key, or with `reencrypt` opening and sealing afresh), journal included: the walk over
/// claimed key ranges, then, under the rotation lease, the sweep of the whole table for wallets
/// still on the old KEK that closes every rotation. Returns the wallets moved and the time taken.
pub async fn rotate(
    database: &Database,
    keys: NativeKeys,
    reencrypt: bool,
    workers: usize,
    batch_size: u32,
) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let identity = RunIdentity::this_process("native baseline".into());
    let (from, to) = (keys.from.0, keys.to.0);
    let total = database.count().await?;
    let begin = NewRotation {
        from_version: from.into(),
        total: total as i64,
        reencrypt,
        output_format: "envelope",
        restores: None,
    };
    let rotation = database.begin_rotation(&begin, &identity).await?;
    database.set_rotation_target(rotation.id, to.into()).await?;
    let claim_ttl = Duration::from_secs(60);
    let walk = Walk::new(WalkSpec {
        database: database.clone(),
        rotation: rotation.id,
        target: 0,
        skip_prefix: Some(format!("{}{to}:", rotor_codec::PREFIX)),
        batch_size,
        identity: identity.clone(),
        claim_ttl,
        reporter: Reporter::silent(),
        total,
        done_before: 0,
    });
    let keys = Arc::new(keys);
    let mut moved = in_parallel(&keys, reencrypt, workers, || WorkerBatches::ranges(walk.clone())).await?;
    // rotor's sweep: every row read again, by the database, for wallets an application wrote
    // under the old KEK meanwhile (the bench's have none), under the rotation lease, the
    // walk's ranges shared out among as many workers as rotor's sweep has.
    database.acquire_lease(&identity, claim_ttl).await?;
    let sweepers = database.sweepers(workers);
    let parts = SweepParts::of(&walk, sweepers).await?;
    moved +=
        in_parallel(&keys, reencrypt, sweepers, || WorkerBatches::sweep(walk.clone(), parts.clone())).await?;
    database.finish_rotation(rotation.id, 0).await?;
    database.release_lease(&identity.lease_token).await?;
    Ok((moved, started.elapsed()))
}

/// [`move_all`] in `workers` tasks at once, each over the batches `batches` makes for it;
/// returns the wallets replaced.
async fn in_parallel(
    keys: &Arc<NativeKeys>,
    reencrypt: bool,
    workers: usize,
    batches: impl Fn() -> WorkerBatches,
) -> anyhow::Result<u64> {
    let mut running = JoinSet::new();
    for _ in 0..workers.max(1) {
        let (keys, batches) = (keys.clone(), batches());
        running.spawn(async move { move_all(&keys, reencrypt, batches).await });
    }
    let mut moved = 0;
    while let Some(joined) = running.join_next().await {
        moved += joined.context("a native worker panicked")??;
    }
    Ok(moved)
}

/// Moves every batch `batches` hands out; returns the wallets replaced.
async fn move_all(keys: &NativeKeys, reencrypt: bool, mut batches: WorkerBatches) -> anyhow::Result<u64> {
    let mut moved = 0u64;
    // The bench's own rows are all wallets: nothing odd to report.
    let odd = crate::store::OddRows::default();
    while let Some(rows) = batches.next(&odd).await? {
        // Compared as rotor's host compares a component's batch: with what the walk handed out.
        // A re-wrap hands back its new head alone, joined to the rest of the row as the host
        // joins a component's.
        let replacements = rows
            .into_iter()
            .map(|row| {
                let ((_, old), (to, new)) = (&keys.from, &keys.to);
                let (id, ciphertext) = (row.id, row.ciphertext.as_str());
                let in_batch = if reencrypt {
                    let plaintext =
                        rotor_codec::open(old, &id, ciphertext).with_context(|| format!("wallet {id}"))?;
                    let sealed = rotor_codec::seal(new, *to, &id, &plaintext)?;
                    batches.replacement(id, sealed).map_err(NotRewrapped::NotHandedOut)
                } else {
                    let head = rotor_codec::rewrap_head(old, new, *to, &id, ciphertext)
                        .with_context(|| format!("wallet {id}"))?;
                    batches.rewrapped(id, &head)
                };
                in_batch.map_err(|refused| anyhow::anyhow!("the walk refused a replacement: {refused:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Written while the next batch is resealed, as rotor's workers submit theirs.
        moved += u64::from(batches.submit(replacements).await?.replaced);
    }
    moved += u64::from(batches.settle_all().await?.replaced);
    Ok(moved)
}

/// The plain read-and-open baseline of `rotor validate`: every row read in keyset pages of
/// 1000 (the next page read while this one is opened) and opened with rotor-codec's native
/// AES-GCM under `kek`, each page split across `workers` threads. No journal, no sandbox, no
/// report of the rows that do not open: a wallet that does not open fails the baseline.
/// Returns the wallets opened and the time taken.
pub async fn read_and_open(database: &Database, kek: Kek, workers: usize) -> anyhow::Result<(u64, Duration)> {
    const PAGE: u32 = 1000;
    let started = Instant::now();
    let kek = Arc::new(kek);
    let read = |after: Option<String>| {
        let database = database.clone();
        tokio::spawn(async move { database.scan(after.as_deref(), PAGE).await })
    };
    let mut ahead = read(None);
    let mut opened = 0;
    loop {
        let rows = ahead.await.context("reading ahead failed")??;
        if rows.is_empty() {
            break;
        }
        ahead = read(rows.last().map(|row| row.id.clone()));
        let rows = Arc::new(rows);
        let mut openers = JoinSet::new();
        for first in 0..workers {
            let (rows, kek) = (rows.clone(), kek.clone());
            openers.spawn_blocking(move || -> anyhow::Result<u64> {
                let mut opened = 0;
                for row in rows.iter().skip(first).step_by(workers) {
                    rotor_codec::open(&kek, &row.id, &row.ciphertext)
                        .with_context(|| format!("wallet {} does not open", row.id))?;
                    opened += 1;
                }
                Ok(opened)
            });
        }
        while let Some(joined) = openers.join_next().await {
            opened += joined.context("an opening thread panicked")??;
        }
    }
    Ok((opened, started.elapsed()))
}
