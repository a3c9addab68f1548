//! The tamper-evident history: every closed rotation and every prune that destroyed a KEK
//! version, as a chain of create-only entries in Vault at `<key-path>-history/NNNNNNNN`, each
//! holding the SHA-256 of the entry before it.
//!
//! rotor's journal lives in the application's database, which its owners can edit; the chain
//! lives in Vault, which the database's owners cannot. Each side checks the other: `rotor
//! history` reads the chain, follows the hashes, and compares each rotation entry with the
//! journal, so an entry edited in Vault (even with every later hash recomputed) and a journal
//! row edited in the database both show as a break. Entries are written create-only, so an
//! edit is also a second KV version of the entry, which is reported too.
//!
//! Writing never fails a command whose work is done: a rotation that closed is closed. Rotations
//! the chain lacks (a Vault refusal, an upgrade from a rotor that kept no chain) are appended, in
//! journal order, by the next command that writes it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::store::{Database, RotationRecord, RotationStatus, now_rfc3339};
use crate::vault::{KvBackend, KvData, VaultError};

/// The KV field an entry's JSON text is stored in.
const FIELD: &str = "entry";
/// How many times an append is retried after another rotor appended first.
const APPEND_ATTEMPTS: usize = 5;

/// One link of the chain, as stored.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    /// Its place in the chain, from 1; also the last part of its path.
    seq: u64,
    /// Hex SHA-256 of the previous entry's stored text; empty for the first.
    prev: String,
    /// When it was written (RFC 3339, UTC).
    written_at: String,
    /// What it records.
    event: Event,
}

/// What an entry records.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Event {
    /// A closed (finished or aborted) rotation, as rotor's journal records it.
    Rotation {
        /// The journal's record, as JSON.
        rotation: serde_json::Value,
    },
    /// A prune that destroyed KEK versions: its receipt.
    Prune {
        /// The receipt, as printed.
        receipt: serde_json::Value,
    },
}

/// The chain as read from Vault, checked link by link.
struct Chain {
    /// Entries read (1..=len exist).
    len: u64,
    /// The last entry's stored text, which the next entry hashes.
    last: Option<Zeroizing<String>>,
    /// Rotation entries: (seq, journal id, the record as stored).
    rotations: Vec<(u64, i64, serde_json::Value)>,
    /// The names (`<time>-v<N>…`) of the stored receipts that prune entries hold.
    receipts: BTreeSet<String>,
    /// What does not hold: each names the entry.
    breaks: Vec<String>,
}

/// What `rotor history` says of the chain.
#[derive(Debug, Default, Serialize)]
pub struct Verdict {
    /// Entries in the chain.
    pub entries: u64,
    /// Every break found, each naming the entry and what does not hold; empty when intact.
    pub breaks: Vec<String>,
    /// Closed rotations of the journal that the chain does not hold yet (the next command that
    /// writes to the chain appends them).
    pub not_yet_recorded: Vec<i64>,
    /// Why the chain could not be read (e.g. a token without read on it); then nothing was
    /// checked.
    pub unreadable: Option<String>,
}

impl Verdict {
    /// Whether there is anything an operator must look at.
    pub fn is_broken(&self) -> bool {
        !self.breaks.is_empty()
    }

    /// The lines `rotor history` ends with.
    pub fn human(&self, key_path: &str) -> String {
        if let Some(why) = &self.unreadable {
            return format!("history in Vault ({key_path}-history/) not checked: {why}");
        }
        let mut lines = vec![match self.breaks.len() {
            0 => format!(
                "history in Vault ({key_path}-history/): {} entries, chain intact and matching the journal",
                self.entries
            ),
            n => format!(
                "HISTORY BROKEN: {n} break(s) in the chain in Vault ({key_path}-history/, {} entries): an entry \
                 or rotor's journal was changed after it was written",
                self.entries
            ),
        }];
        lines.extend(self.breaks.iter().map(|b| format!("  {b}")));
        if !self.not_yet_recorded.is_empty() {
            let ids: Vec<String> = self.not_yet_recorded.iter().map(|id| format!("#{id}")).collect();
            lines.push(format!(
                "  not in the chain yet: rotation {} (the next rotate, abort or prune appends them)",
                ids.join(", ")
            ));
        }
        lines.join("\n")
    }
}

/// The chain of one KEK's history in Vault.
pub struct Ledger<'a> {
    kv: &'a KvBackend,
    /// The KEK's path within the mount; the chain is at `<key_path>-history/`.
    key_path: &'a str,
}

impl<'a> Ledger<'a> {
    /// The chain of the KEK at `key_path`.
    pub fn new(kv: &'a KvBackend, key_path: &'a str) -> Ledger<'a> {
        Ledger { kv, key_path }
    }

    fn path(&self, seq: u64) -> String {
        format!("{}-history/{seq:08}", self.key_path)
    }

    /// Reads every entry, in order, checking each link as it goes.
    async fn read(&self) -> Result<Chain, VaultError> {
        let mut chain = Chain {
            len: 0,
            last: None,
            rotations: Vec::new(),
            receipts: BTreeSet::new(),
            breaks: Vec::new(),
        };
        loop {
            let seq = chain.len + 1;
            let Some(secret) = self.kv.read(&self.path(seq), None).await? else { return Ok(chain) };
            if secret.version > 1 {
                chain.breaks.push(format!(
                    "entry {seq} was rewritten in Vault (it is at KV version {}; rotor writes each entry once)",
                    secret.version
                ));
            }
            let text = secret.data.get(FIELD).cloned().unwrap_or_default();
            match serde_json::from_str::<Entry>(&text) {
                Ok(entry) => {
                    let expected = chain.last.as_deref().map(|last| hex_sha256(last)).unwrap_or_default();
                    if entry.seq != seq {
                        chain.breaks.push(format!("entry {seq} calls itself entry {}", entry.seq));
                    }
                    if entry.prev != expected {
                        chain.breaks.push(format!(
                            "entry {seq} does not follow entry {}: the hash it holds is not that entry's \
                             (one of the two was changed after entry {seq} was written)",
                            seq - 1
                        ));
                    }
                    match entry.event {
                        Event::Rotation { rotation } => {
                            match rotation.get("id").and_then(serde_json::Value::as_i64) {
                                Some(id) => chain.rotations.push((seq, id, rotation)),
                                None => {
                                    chain.breaks.push(format!("entry {seq} records a rotation without an id"))
                                }
                            }
                        }
                        Event::Prune { receipt } => chain.receipts.extend(receipt_name(&receipt)),
                    }
                }
                Err(e) => chain.breaks.push(format!("entry {seq} is not a rotor history entry ({e})")),
            }
            chain.len = seq;
            chain.last = Some(text);
        }
    }

    /// Appends `event` after the chain's last entry, create-only; `Ok(false)` if another rotor
    /// appended there first (read the chain again and retry).
    async fn append(&self, chain: &mut Chain, event: Event) -> Result<bool, VaultError> {
        let seq = chain.len + 1;
        let entry = Entry {
            seq,
            prev: chain.last.as_deref().map(|last| hex_sha256(last)).unwrap_or_default(),
            written_at: now_rfc3339(),
            event,
        };
        let text = Zeroizing::new(serde_json::to_string(&entry).expect("history entries serialize"));
        let data = KvData::from([(FIELD.to_owned(), text.clone())]);
        match self.kv.write(&self.path(seq), &data, Some(0)).await {
            Ok(_) => {
                chain.len = seq;
                chain.last = Some(text);
                Ok(true)
            }
            Err(VaultError::CasMismatch { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Appends every closed rotation of `database`'s KEK that the chain does not hold, oldest
    /// first; returns how many.
    pub async fn catch_up(&self, database: &Database) -> anyhow::Result<usize> {
        self.write_with(database, None).await
    }

    /// Appends a prune's receipt (after any closed rotation the chain lacks).
    pub async fn record_prune(&self, database: &Database, receipt: serde_json::Value) -> anyhow::Result<()> {
        self.write_with(database, Some(receipt)).await.map(|_| ())
    }

    /// [`Ledger::catch_up`] after a command whose work is done: a failure is logged, not
    /// returned, and the next command that writes the chain appends what is missing. Nothing
    /// is written for a KEK from the environment, which has nowhere to write.
    pub async fn extend(&self, database: &Database) {
        if !self.kv.writable() {
            return;
        }
        match self.catch_up(database).await {
            Ok(0) => {}
            Ok(written) => tracing::debug!(written, "appended closed rotations to the history in Vault"),
            Err(e) => tracing::warn!(
                "the history in Vault ({}-history/) was not extended ({e:#}); the next rotate, abort or \
                 prune appends what is missing",
                self.key_path
            ),
        }
    }

    async fn write_with(
        &self,
        database: &Database,
        receipt: Option<serde_json::Value>,
    ) -> anyhow::Result<usize> {
        let closed = closed_rotations(database).await?;
        // Receipts stored in Vault whose entry an earlier prune could not append; not the one
        // being appended now, which is stored there too.
        let fresh = receipt.as_ref().and_then(receipt_name);
        let stored: Vec<String> =
            self.stored_receipts().await.into_iter().filter(|name| Some(name) != fresh.as_ref()).collect();
        // What the chain may lack, oldest first: each rotation by when it closed, each receipt
        // by when it was made (its name starts with that time, `:` spelt `-`).
        let mut pending: Vec<(String, Missing)> = closed
            .into_iter()
            .map(|r| {
                (r.finished_at.clone().unwrap_or_default().replace(':', "-"), Missing::Rotation(Box::new(r)))
            })
            .chain(stored.into_iter().map(|name| (name.clone(), Missing::Receipt(name))))
            .collect();
        pending.sort_by(|a, b| a.0.cmp(&b.0));
        let mut receipt = receipt;
        let mut written = 0;
        for _ in 0..APPEND_ATTEMPTS {
            let mut chain = self.read().await?;
            let recorded: BTreeSet<i64> = chain.rotations.iter().map(|(_, id, _)| *id).collect();
            pending.retain(|(_, missing)| match missing {
                Missing::Rotation(r) => !recorded.contains(&r.id),
                Missing::Receipt(name) => !chain.receipts.contains(name),
            });
            let mut raced = false;
            while let Some((_, missing)) = pending.first() {
                let event = match missing {
                    Missing::Rotation(rotation) => {
                        Event::Rotation { rotation: serde_json::to_value(rotation)? }
                    }
                    Missing::Receipt(name) => match self.stored_receipt(name).await? {
                        Some(stored) => Event::Prune { receipt: stored },
                        None => {
                            pending.remove(0);
                            continue;
                        }
                    },
                };
                if !self.append(&mut chain, event).await? {
                    raced = true;
                    break;
                }
                pending.remove(0);
                written += 1;
            }
            if raced {
                continue;
            }
            match receipt.take() {
                None => return Ok(written),
                Some(value) => {
                    if self.append(&mut chain, Event::Prune { receipt: value.clone() }).await? {
                        return Ok(written);
                    }
                    receipt = Some(value);
                }
            }
        }
        anyhow::bail!(
            "other rotors kept appending to the history at {}-history/ while this one tried {APPEND_ATTEMPTS} times",
            self.key_path
        )
    }

    fn receipts_folder(&self) -> String {
        format!("{}-receipts/", self.key_path)
    }

    /// The names of the receipts stored for this KEK, oldest first (their names start with
    /// the time). A token whose policy predates listing them (or a Vault that cannot be
    /// reached now) gets none: the backlog waits for a command that can list it.
    async fn stored_receipts(&self) -> Vec<String> {
        match self.kv.list(&self.receipts_folder()).await {
            Ok(mut names) => {
                names.sort();
                names
            }
            Err(e) => {
                tracing::debug!(
                    "receipts not listed ({e}): any missing from the history stay missing for now"
                );
                Vec::new()
            }
        }
    }

    /// The receipt stored as `name`, as prune printed it (with where it is stored).
    async fn stored_receipt(&self, name: &str) -> anyhow::Result<Option<serde_json::Value>> {
        let path = format!("{}{name}", self.receipts_folder());
        let Some(secret) = self.kv.read(&path, None).await? else { return Ok(None) };
        let text = secret.data.get("receipt").cloned().unwrap_or_default();
        let mut receipt: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{path} holds no receipt ({e})"))?;
        // Stored before it was known where; as printed, it says.
        if let Some(key_path) = receipt.get("key_path").and_then(serde_json::Value::as_str) {
            let stored_at = format!("{key_path}-receipts/{name}");
            receipt["stored_at"] = serde_json::Value::String(stored_at);
        }
        Ok(Some(receipt))
    }

    /// Reads and checks the chain, and compares each rotation entry with `database`'s journal.
    pub async fn verify(&self, database: &Database) -> anyhow::Result<Verdict> {
        let chain = match self.read().await {
            Ok(chain) => chain,
            Err(e @ (VaultError::PermissionDenied { .. } | VaultError::NoMount { .. })) => {
                return Ok(Verdict { unreadable: Some(e.to_string()), ..Verdict::default() });
            }
            Err(e) => return Err(e.into()),
        };
        let journal = closed_rotations(database).await?;
        let mut breaks = chain.breaks;
        let mut seen = BTreeSet::new();
        for (seq, id, stored) in &chain.rotations {
            if !seen.insert(*id) {
                breaks.push(format!("entry {seq} records rotation #{id} a second time"));
                continue;
            }
            match journal.iter().find(|r| r.id == *id) {
                None => breaks.push(format!(
                    "entry {seq} records rotation #{id}, which rotor's journal does not hold as closed"
                )),
                Some(record) => {
                    let differs = differing_fields(&serde_json::to_value(record)?, stored);
                    if !differs.is_empty() {
                        breaks.push(format!(
                            "entry {seq} (rotation #{id}) and rotor's journal disagree on {}",
                            differs.join(", ")
                        ));
                    }
                }
            }
        }
        let not_yet_recorded = journal.iter().map(|r| r.id).filter(|id| !seen.contains(id)).collect();
        Ok(Verdict { entries: chain.len, breaks, not_yet_recorded, unreadable: None })
    }
}

/// Something the chain may lack.
enum Missing {
    /// A closed rotation of the journal.
    Rotation(Box<RotationRecord>),
    /// A receipt stored in Vault, by name.
    Receipt(String),
}

/// The name a receipt is stored under, from where it says it is stored.
fn receipt_name(receipt: &serde_json::Value) -> Option<String> {
    let stored_at = receipt.get("stored_at")?.as_str()?;
    Some(stored_at.rsplit('/').next()?.to_owned())
}

/// The closed rotations of the database's KEK, oldest first.
async fn closed_rotations(database: &Database) -> anyhow::Result<Vec<RotationRecord>> {
    let mut closed = database.rotations().await?;
    closed.retain(|r| r.status != RotationStatus::Running);
    closed.sort_by_key(|r| r.id);
    Ok(closed)
}

/// The fields of a stored rotation entry whose values the journal's record does not share.
/// Only the entry's own fields are compared: a later rotor records more of a rotation, and an
/// entry written before knew nothing of those. (An entry with a field removed was rewritten,
/// which the chain itself reports.)
fn differing_fields(journal: &serde_json::Value, stored: &serde_json::Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (journal, stored) = (journal.as_object().unwrap_or(&empty), stored.as_object().unwrap_or(&empty));
    stored
        .iter()
        .filter(|(key, value)| journal.get(*key) != Some(value))
        .map(|(key, _)| key.clone())
        .collect()
}

fn hex_sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_entry_s_own_fields_are_compared() {
        let journal = serde_json::json!({ "id": 1, "rotated": 3, "failed": 0, "added_later": "x" });
        let stored = serde_json::json!({ "id": 1, "rotated": 2, "failed": 0, "forged": true });
        assert_eq!(differing_fields(&journal, &stored), ["forged", "rotated"]);
        assert!(differing_fields(&journal, &journal).is_empty());
    }

    #[test]
    fn entries_are_hashed_as_stored() {
        assert_eq!(hex_sha256(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
