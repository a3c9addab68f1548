//! How a rotation's wallets reach its workers, through `wallet-store.next-batch`.
//!
//! The walk is split into key ranges in rotor's tables (planned when the rotation records its
//! target). A worker claims one range at a time, in this process or any other, and walks it in
//! batches, reading the next batch while the component works on the current one. A claim lasts
//! as long as its holder keeps writing; one whose holder died runs out and passes to the next
//! worker, which goes on after the last batch the dead one committed. Once every range is done,
//! the process holding the rotation lease sweeps the whole table for wallets an application
//! wrote under the old KEK after the walk had passed them; on PostgreSQL its workers take the
//! walk's ranges in turn ([`SweepParts`], `Database::sweepers`). A rotation of several tables
//! walks them one after another, each with a [`Walk`] of its own over that table's ranges.
//!
//! A worker's writes are pipelined too: [`WorkerBatches::submit`] writes a batch on a task of
//! its own while the component reseals the next one. One write per worker is in flight at a
//! time, and it lands before the next one starts, before its key range is marked done and
//! before any other write of the worker, so the range's checkpoints keep their order.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::progress::Reporter;
use crate::store::{
    BatchOutcome, Checkpoint, ClaimedRange, Database, OddRows, Replacement, RowVersion, RunIdentity,
    ScanPage, StoreError, WalletRow, unix_now,
};

/// How long a worker with nothing to claim waits before looking again, while other workers
/// finish their ranges (or their claims run out).
const IDLE_POLL: Duration = Duration::from_millis(200);

/// What a rotation's walk covers, and how this process walks it.
pub struct WalkSpec {
    /// Where the key ranges are, reading and writing the table this walk moves.
    pub database: Database,
    /// The rotation whose ranges are walked.
    pub rotation: i64,
    /// Which of the rotation's targets (its place in the scope) this walk moves.
    pub target: usize,
    /// Wallets whose ciphertext starts with this are on the target already: the database
    /// leaves them out.
    pub skip_prefix: Option<String>,
    /// Wallets per batch handed to a worker.
    pub batch_size: u32,
    /// Names this process's claims (its token is unguessable, so no other process renews
    /// them), and who holds them for `rotor status`.
    pub identity: RunIdentity,
    /// How long a claim lasts without a batch renewing it.
    pub claim_ttl: Duration,
    /// Shows the walk's progress.
    pub reporter: Reporter,
    /// Wallets in every target when the rotation began: the progress bar's end.
    pub total: u64,
    /// Rows this process walked in the targets before this one: where its progress starts.
    pub done_before: u64,
}

/// One rotation's walk, shared by this process's workers.
pub struct Walk {
    spec: WalkSpec,
    handed_out: AtomicU64,
    /// Wakes this process's idle workers when one of its ranges is done: the walk may be over.
    range_done: tokio::sync::Notify,
    /// Held shared by every write a worker submitted while it runs: [`Walk::writes_settled`]
    /// takes it whole.
    writes: Arc<tokio::sync::RwLock<()>>,
}

impl std::ops::Deref for Walk {
    type Target = WalkSpec;

    fn deref(&self) -> &WalkSpec {
        &self.spec
    }
}

impl Walk {
    /// A walk as `spec` says (a batch holds at least one wallet).
    pub fn new(spec: WalkSpec) -> Arc<Walk> {
        let spec = WalkSpec { batch_size: spec.batch_size.max(1), ..spec };
        Arc::new(Walk {
            spec,
            handed_out: AtomicU64::new(0),
            range_done: tokio::sync::Notify::new(),
            writes: Arc::default(),
        })
    }

    /// Waits until no write submitted by this walk's workers is running. Dropping a worker's
    /// batches cancels its write in flight; this is how a caller that stopped its workers
    /// knows that none of their writes lands after it goes on.
    pub async fn writes_settled(&self) {
        drop(self.writes.write().await);
    }

    /// Gives back this process's key ranges (keeping how far each was walked) and the rotation
    /// lease, for a process that stops before the walk is done. Failures are logged: the claims
    /// then run out on their own.
    pub async fn give_back(&self) {
        let token = &self.identity.lease_token;
        if let Err(e) = self.database.release_claims(self.rotation, token).await {
            tracing::warn!("could not release this rotor's key ranges (their claims will run out): {e}");
        }
        if let Err(e) = self.database.release_lease(token).await {
            tracing::warn!("could not release the rotation lease (it will run out): {e}");
        }
    }

    /// Rows read for this process's workers so far (odd ones, not handed out, included).
    pub fn handed_out(&self) -> u64 {
        self.handed_out.load(Ordering::Relaxed)
    }

    fn expiry(&self) -> i64 {
        unix_now() + self.claim_ttl.as_secs() as i64
    }

    /// The next free range; waits while other workers still hold the last ones, since a
    /// holder that dies leaves its range to whoever is still here.
    async fn claim(&self) -> Result<Option<ClaimedRange>, StoreError> {
        loop {
            let claimed =
                self.database.claim_range(self.rotation, self.target, &self.identity, self.expiry()).await?;
            if claimed.is_some() {
                return Ok(claimed);
            }
            if self.database.ranges_left(self.rotation, self.target).await? == 0 {
                return Ok(None);
            }
            if self.database.release_dead_claims(self.rotation, &self.identity.host).await? == 0 {
                // Other processes' ranges end unannounced: look again now and then.
                tokio::select! {
                    () = tokio::time::sleep(IDLE_POLL) => {}
                    () = self.range_done.notified() => {}
                }
            }
        }
    }

    /// Reads the batch after `after` within `upto`, on a task of its own so that it overlaps
    /// the component's work on the batch before.
    fn read_ahead(
        &self,
        after: Option<String>,
        upto: Option<String>,
        odd: &OddRows,
    ) -> JoinHandle<Result<ScanPage, StoreError>> {
        let (database, limit, skip) = (self.database.clone(), self.batch_size, self.skip_prefix.clone());
        let odd = odd.clone();
        tokio::spawn(async move {
            database.checked_scan(after.as_deref(), upto.as_deref(), limit, skip.as_deref(), &odd).await
        })
    }
}

/// The range a worker is walking.
struct Current {
    range: ClaimedRange,
    /// The last id read (handed out, or odd and reported).
    cursor: Option<String>,
    /// The last read came back short: nothing is left after `cursor`.
    exhausted: bool,
    ahead: Option<JoinHandle<Result<ScanPage, StoreError>>>,
    renewed: Instant,
    /// An empty batch was handed out at the range's end for the conflicts of its last writes
    /// (see `wallet-store.next-batch`); the range is done at the next call either way.
    collecting: bool,
}

impl Drop for Current {
    fn drop(&mut self) {
        if let Some(read) = self.ahead.take() {
            read.abort();
        }
    }
}

/// Which wallets a worker is handed.
enum Pass {
    /// Ranges claimed in rotor's tables.
    Ranges,
    /// The final sweep's parts, unclaimed: this process holds the rotation lease.
    Sweep(Arc<SweepParts>),
}

/// A key range of the final sweep: after this id (`None`: from the start), up to that one
/// included (`None`: to the end).
type Part = (Option<String>, Option<String>);

/// The final sweep of one table, cut into the walk's key ranges so that each of the process's
/// sweepers scans a part at a time: on PostgreSQL the sweep is the server's scan of every row
/// version the walk just wrote, about a tenth of a re-wrap, and one sweeper left a core idle.
pub struct SweepParts(Mutex<VecDeque<Part>>);

impl SweepParts {
    /// The parts of `walk`'s table for `sweepers` workers: its key ranges, if they still cut
    /// the whole id space (from the start, each after the one before, to the end), or else the
    /// table as one part, as it is for a lone sweeper (one query walks it, not one per range).
    pub async fn of(walk: &Walk, sweepers: usize) -> Result<Arc<SweepParts>, StoreError> {
        let ranges = match sweepers {
            0 | 1 => Vec::new(),
            _ => walk.database.range_bounds(walk.rotation, walk.target).await?,
        };
        Ok(Arc::new(SweepParts::covering(ranges)))
    }

    fn covering(ranges: Vec<Part>) -> SweepParts {
        let contiguous = ranges.first().is_some_and(|(after, _)| after.is_none())
            && ranges.last().is_some_and(|(_, upto)| upto.is_none())
            && ranges.windows(2).all(|pair| pair[0].1.is_some() && pair[0].1 == pair[1].0);
        let parts = if contiguous { ranges } else { vec![(None, None)] };
        SweepParts(Mutex::new(parts.into()))
    }

    fn take(&self) -> Option<Part> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop_front()
    }
}

/// A batch's write on a task of its own, holding its walk's `writes` lock shared.
type Write = JoinHandle<Result<BatchOutcome, StoreError>>;

/// One worker's share of the walk: what its `next-batch` calls return.
pub struct WorkerBatches {
    walk: Arc<Walk>,
    pass: Pass,
    current: Option<Current>,
    /// The ciphertexts of the batch handed out last, by id, with the version each row was read
    /// at: what `replace-current-batch` compares with, so the component need not send them
    /// back.
    handed_out: HashMap<String, (String, Option<RowVersion>)>,
    /// The write [`WorkerBatches::submit`] started last, if it may still be running.
    writing: Option<Write>,
    /// What landed writes did that the worker was not told yet.
    unreported: BatchOutcome,
}

impl WorkerBatches {
    /// A worker of the walk over claimed ranges.
    pub fn ranges(walk: Arc<Walk>) -> WorkerBatches {
        WorkerBatches::new(walk, Pass::Ranges)
    }

    /// A worker of the final sweep, taking `parts` in turn with this process's other sweepers.
    pub fn sweep(walk: Arc<Walk>, parts: Arc<SweepParts>) -> WorkerBatches {
        WorkerBatches::new(walk, Pass::Sweep(parts))
    }

    fn new(walk: Arc<Walk>, pass: Pass) -> WorkerBatches {
        WorkerBatches {
            walk,
            pass,
            current: None,
            handed_out: HashMap::new(),
            writing: None,
            unreported: BatchOutcome::default(),
        }
    }

    /// The next batch, `None` once there is nothing left for this worker. Odd rows (see
    /// [`OddRows`]) are not handed out but recorded in `odd`; the walk goes on past them. At
    /// a range's end the worker's write in flight lands first; if its writes there met
    /// conflicts not yet reported, an empty batch is handed out once, so that the worker
    /// collects and retries them while their range's checkpoint is still its own.
    pub async fn next(&mut self, odd: &OddRows) -> Result<Option<Vec<WalletRow>>, StoreError> {
        self.handed_out.clear();
        loop {
            let current = match &mut self.current {
                Some(current) => current,
                None => match self.start_range().await? {
                    Some(range) => self.current.insert(range),
                    None => {
                        self.settle().await?;
                        return Ok(None);
                    }
                },
            };
            let page = match (current.exhausted, current.ahead.take()) {
                (true, _) => ScanPage::default(),
                (false, Some(read)) => {
                    read.await.map_err(|e| StoreError::Config(format!("reading ahead failed: {e}")))??
                }
                (false, None) => {
                    let range = &current.range;
                    let after = current.cursor.as_deref().or(range.after_id.as_deref());
                    let walk = &self.walk;
                    let (upto, skip) = (range.upto_id.as_deref(), walk.skip_prefix.as_deref());
                    walk.database.checked_scan(after, upto, walk.batch_size, skip, odd).await?
                }
            };
            if page.fetched == 0 {
                if self.range_end().await? {
                    return Ok(Some(Vec::new()));
                }
                continue;
            }
            // The cursor passes odd rows too: a page of odd rows only is no end of the range.
            current.exhausted = page.fetched < self.walk.batch_size as usize;
            current.cursor = page.last_id;
            if !current.exhausted {
                current.ahead =
                    Some(self.walk.read_ahead(current.cursor.clone(), current.range.upto_id.clone(), odd));
            }
            // A range whose batches need no writes (already moved before a crash) renews its
            // claim here rather than in a batch's transaction.
            if matches!(self.pass, Pass::Ranges) && current.renewed.elapsed() > self.walk.claim_ttl / 3 {
                let walk = &self.walk;
                walk.database
                    .renew_range(walk.rotation, current.range.seq, &walk.identity.lease_token, walk.expiry())
                    .await?;
                current.renewed = Instant::now();
            }
            let fetched = page.fetched as u64;
            let done =
                self.walk.done_before + self.walk.handed_out.fetch_add(fetched, Ordering::Relaxed) + fetched;
            if matches!(self.pass, Pass::Ranges) {
                self.walk.reporter.progress(done, self.walk.total.max(done));
            }
            let rows = page.rows;
            if rows.is_empty() {
                continue;
            }
            let mut versions = page.versions.into_iter();
            self.handed_out
                .extend(rows.iter().map(|row| (row.id.clone(), (row.ciphertext.clone(), versions.next()))));
            return Ok(Some(rows));
        }
    }

    async fn start_range(&mut self) -> Result<Option<Current>, StoreError> {
        let range = match &self.pass {
            Pass::Ranges => match self.walk.claim().await? {
                Some(range) => range,
                None => return Ok(None),
            },
            Pass::Sweep(parts) => match parts.take() {
                Some((after_id, upto_id)) => ClaimedRange { seq: -1, after_id, upto_id, cursor: None },
                None => return Ok(None),
            },
        };
        let cursor = range.cursor.clone();
        Ok(Some(Current {
            range,
            cursor,
            exhausted: false,
            ahead: None,
            renewed: Instant::now(),
            collecting: false,
        }))
    }

    /// The current range was read to its end: its writes land, and it is done, unless they met
    /// conflicts to collect first (`true`: hand out an empty batch).
    async fn range_end(&mut self) -> Result<bool, StoreError> {
        self.settle().await?;
        if let Some(current) = &mut self.current
            && !current.collecting
            && !self.unreported.conflicts.is_empty()
        {
            current.collecting = true;
            return Ok(true);
        }
        self.end_range().await?;
        Ok(false)
    }

    /// Starts writing `rows`, replacements of the batch handed out last (see
    /// [`WorkerBatches::replacement`]), with that batch's checkpoint, on a task of its own once
    /// the write before it has landed. Returns the outcome of the earlier writes not reported
    /// yet; an earlier write that failed is the error, and then `rows` are not written.
    pub async fn submit(&mut self, rows: Vec<Replacement>) -> Result<BatchOutcome, StoreError> {
        self.settle().await?;
        if !rows.is_empty() {
            let (walk, mark) = (self.walk.clone(), self.mark());
            let shared = walk.writes.clone().read_owned().await;
            self.writing = Some(tokio::spawn(async move {
                let _writing = shared;
                walk.database.replace_batch(&rows, mark.as_ref().map(|mark| mark.checkpoint(&walk))).await
            }));
        }
        Ok(std::mem::take(&mut self.unreported))
    }

    /// Waits for the write in flight, if any, keeping its outcome to report.
    pub async fn settle(&mut self) -> Result<(), StoreError> {
        if let Some(write) = self.writing.take() {
            let outcome =
                write.await.map_err(|e| StoreError::Config(format!("writing a batch failed: {e}")))??;
            self.unreported.absorb(outcome);
        }
        Ok(())
    }

    /// Waits for the write in flight, if any, and returns what every landed write not reported
    /// yet did.
    pub async fn settle_all(&mut self) -> Result<BatchOutcome, StoreError> {
        self.settle().await?;
        Ok(std::mem::take(&mut self.unreported))
    }

    /// What a batch written now records (see [`Mark`]); `None` between ranges.
    fn mark(&self) -> Option<Mark> {
        let current = self.current.as_ref()?;
        Some(Mark {
            range: match self.pass {
                Pass::Ranges => {
                    Some((current.range.seq, current.cursor.as_deref().unwrap_or_default().to_owned()))
                }
                Pass::Sweep(_) => None,
            },
            expires_at: self.walk.expiry(),
        })
    }

    async fn end_range(&mut self) -> Result<(), StoreError> {
        let Some(current) = self.current.take() else { return Ok(()) };
        match &self.pass {
            Pass::Ranges => {
                let walk = &self.walk;
                walk.database
                    .finish_range(walk.rotation, current.range.seq, &walk.identity.lease_token)
                    .await?;
                walk.range_done.notify_waiters();
                Ok(())
            }
            Pass::Sweep(_) => Ok(()),
        }
    }

    /// `id`'s replacement by `replacement`, compared with what the current batch handed out
    /// for it; each id is replaced once. `Err(id)` if the batch handed out no such wallet (or
    /// its replacement was taken already).
    pub fn replacement(&mut self, id: String, replacement: String) -> Result<Replacement, String> {
        match self.handed_out.remove(&id) {
            Some((expected, read_at)) => Ok(Replacement { id, expected, replacement, read_at, heads: None }),
            None => Err(id),
        }
    }

    /// `id`'s re-wrap, given as the new head alone (see [`rotor_codec::rewrap_head_lengths`]),
    /// joined to the rest of what the current batch handed out for it; each id is replaced
    /// once, as by [`WorkerBatches::replacement`].
    pub fn rewrapped(&mut self, id: String, head: &str) -> Result<Replacement, NotRewrapped> {
        let Some((expected, read_at)) = self.handed_out.remove(&id) else {
            return Err(NotRewrapped::NotHandedOut(id));
        };
        Replacement::joined(id, expected, head, read_at).map_err(NotRewrapped::NotAHead)
    }

    /// Writes `rows` now, once the write in flight has landed (its outcome is kept to report),
    /// with the checkpoint of the batch handed out last: a worker's retries of conflicting rows.
    pub async fn write(&mut self, rows: &[Replacement]) -> Result<BatchOutcome, StoreError> {
        self.settle().await?;
        let mark = self.mark();
        self.walk.database.replace_batch(rows, mark.as_ref().map(|mark| mark.checkpoint(&self.walk))).await
    }
}

/// Why [`WorkerBatches::rewrapped`] refused a head.
#[derive(Debug, PartialEq, Eq)]
pub enum NotRewrapped {
    /// The batch handed out last has no such wallet, or its replacement was taken already.
    NotHandedOut(String),
    /// The wallet's row is not an envelope, or what was given is not exactly the head of one
    /// that keeps the row's data.
    NotAHead(String),
}

impl Drop for WorkerBatches {
    /// A worker stopped with a write in flight: the write is cancelled (its transaction rolls
    /// back unless it was committing); [`Walk::writes_settled`] waits for it to be gone.
    fn drop(&mut self) {
        if let Some(write) = self.writing.take() {
            write.abort();
        }
    }
}

/// What a batch records with its rows, taken when it is submitted and owned by the task that
/// writes it: its range's progress and claim, or for the sweep the rotation's progress and
/// lease (held by the sweeping process, under the walk's identity).
struct Mark {
    /// The key range's number and the batch's last id; `None` for the sweep.
    range: Option<(i64, String)>,
    expires_at: i64,
}

impl Mark {
    fn checkpoint<'a>(&'a self, walk: &'a Walk) -> Checkpoint<'a> {
        match &self.range {
            Some((seq, cursor)) => Checkpoint::Range {
                rotation: walk.rotation,
                seq: *seq,
                token: &walk.identity.lease_token,
                cursor,
                expires_at: self.expires_at,
            },
            None => Checkpoint::Rotation {
                rotation: walk.rotation,
                lease_token: &walk.identity.lease_token,
                lease_expires_at: self.expires_at,
            },
        }
    }
}

/// What a worker's `next-batch` hands out: its share of a rotation's walk, or of a read-only
/// pass over the table shared by several instances.
pub enum Batches {
    /// This worker's share of a rotation's walk: the key ranges it claims, one after another.
    Walk(Box<WorkerBatches>),
    /// Batches of a read-only pass shared with the other workers of this process.
    Shared(Arc<SharedScan>),
}

impl Batches {
    /// The next batch; odd rows met on the way are recorded in `odd` (a shared pass, in the
    /// collection it was made with, which its workers share).
    pub async fn next(&mut self, odd: &OddRows) -> Result<Option<Vec<WalletRow>>, StoreError> {
        match self {
            Batches::Walk(batches) => batches.next(odd).await,
            Batches::Shared(scan) => scan.next().await,
        }
    }
}

/// Pages a [`SharedScan`] reads ahead of its workers. Two: the next page's round trip to the
/// database overlaps the opening of the current ones, as in the native read-and-open baseline
/// (on PostgreSQL, reading a page on demand left the workers waiting for every page).
const READ_AHEAD: usize = 2;

/// The fewest rows a [`SharedScan`] reads per round trip, whatever the batch size: what the
/// native read-and-open baseline reads. Each page is handed out in batches of the batch size,
/// so the component still sees batches of the size the plan says; only the round trips to the
/// database get fewer (four times fewer at the default 250).
const MIN_SCAN_PAGE: u32 = 1000;

/// The whole table once, shared batch by batch by this process's workers, with nothing written
/// anywhere: how `validate` spreads over instances. A task of its own reads pages of at least
/// [`MIN_SCAN_PAGE`] rows in key order, up to [`READ_AHEAD`] pages ahead of the workers.
pub struct SharedScan {
    pages: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Result<Vec<WalletRow>, StoreError>>>,
    reader: JoinHandle<()>,
}

impl SharedScan {
    /// A pass over the table starting at its first id, recording the odd rows it meets in
    /// `odd`; `total` is the row count the progress shows.
    pub fn new(
        database: Database,
        batch_size: u32,
        reporter: Reporter,
        total: u64,
        odd: OddRows,
    ) -> Arc<SharedScan> {
        let batch_size = batch_size.max(1);
        let page_size = batch_size.max(MIN_SCAN_PAGE);
        let batches_per_page = page_size.div_ceil(batch_size) as usize;
        let (pages, received) = tokio::sync::mpsc::channel(READ_AHEAD * batches_per_page);
        let reader = tokio::spawn(async move {
            let (mut after, mut read) = (None::<String>, 0u64);
            loop {
                let page = match database.checked_scan(after.as_deref(), None, page_size, None, &odd).await {
                    Ok(page) => page,
                    Err(error) => {
                        let _ = pages.send(Err(error)).await;
                        return;
                    }
                };
                if page.fetched == 0 {
                    return;
                }
                read += page.fetched as u64;
                reporter.progress(read, total.max(read));
                // In batches of the plan's size; a page of odd rows only hands out nothing.
                let mut rows = page.rows;
                while !rows.is_empty() {
                    let rest = rows.split_off(rows.len().min(batch_size as usize));
                    if pages.send(Ok(rows)).await.is_err() {
                        return; // Every worker is gone.
                    }
                    rows = rest;
                }
                match page.last_id {
                    Some(last) => after = Some(last),
                    None => return,
                }
            }
        });
        Arc::new(SharedScan { pages: tokio::sync::Mutex::new(received), reader })
    }

    /// The next batch of the table, `None` once it is done (or after a read failed, which one
    /// worker receives). Batches never overlap.
    pub async fn next(&self) -> Result<Option<Vec<WalletRow>>, StoreError> {
        self.pages.lock().await.recv().await.transpose()
    }
}

impl Drop for SharedScan {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Every odd row of the table (see [`OddRows`]), read without handing anything out: what
/// `--strict` refuses besides wallets that do not open.
pub async fn find_odd_rows(database: &Database, batch_size: u32) -> Result<OddRows, StoreError> {
    let odd = OddRows::default();
    let mut after: Option<String> = None;
    loop {
        let page = database.checked_scan(after.as_deref(), None, batch_size.max(1), None, &odd).await?;
        if page.fetched < batch_size.max(1) as usize {
            return Ok(odd);
        }
        after = page.last_id;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(after: Option<&str>, upto: Option<&str>) -> Part {
        (after.map(str::to_owned), upto.map(str::to_owned))
    }

    fn taken(parts: SweepParts) -> Vec<Part> {
        std::iter::from_fn(|| parts.take()).collect()
    }

    #[test]
    fn the_sweep_takes_the_walks_ranges_only_where_they_cut_the_whole_id_space() {
        let whole = vec![part(None, None)];
        let ranges = vec![part(None, Some("b")), part(Some("b"), Some("m")), part(Some("m"), None)];
        assert_eq!(taken(SweepParts::covering(ranges.clone())), ranges);
        assert_eq!(taken(SweepParts::covering(whole.clone())), whole);
        // Anything that could leave ids out of every part sweeps the table whole instead.
        for broken in [
            vec![],
            vec![part(Some("a"), Some("b")), part(Some("b"), None)],
            vec![part(None, Some("b")), part(Some("b"), Some("m"))],
            vec![part(None, Some("b")), part(Some("c"), None)],
            vec![part(None, None), part(None, None)],
            vec![part(None, Some("m")), part(Some("b"), None), part(None, None)],
        ] {
            assert_eq!(taken(SweepParts::covering(broken.clone())), whole, "{broken:?}");
        }
    }
}
