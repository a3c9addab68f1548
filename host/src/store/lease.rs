//! Who holds the rotation lease and the key ranges: the identity a rotor records, and how a
//! holder that died on this host is told from a live one.

use serde::Serialize;

use super::StoreError;

/// Facts about the run that the host, not the component, knows.
#[derive(Clone, Debug)]
pub struct RunIdentity {
    /// `user@host (pid N)`: who to ask about a running rotation.
    pub started_by: String,
    /// This machine's host name.
    pub host: String,
    /// This process's id.
    pub pid: u32,
    /// `<boot id>:<start time>` of this process: tells it from an earlier process that had the
    /// same pid (a rotor restarted as PID 1 in a new container, a host rebooted since).
    pub process_key: String,
    /// Random per process: names this process's hold on the rotation lease.
    pub lease_token: String,
    /// Hex sha256 of the component the run executes.
    pub component_sha256: String,
    /// Whom Vault knows the run's token as (display name, entity, AppRole role), when known:
    /// recorded beside `started_by`, which only names the operating-system user.
    pub vault_identity: Option<String>,
}

impl RunIdentity {
    /// This process, running the component with digest `component_sha256`.
    pub fn this_process(component_sha256: String) -> RunIdentity {
        let host = host_name();
        let pid = std::process::id();
        RunIdentity {
            started_by: format!("{}@{host} (pid {pid})", user_name()),
            host,
            pid,
            process_key: process_key(pid).unwrap_or_default(),
            lease_token: lease_token(),
            component_sha256,
            vault_identity: None,
        }
    }
}

fn user_name() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into())
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Names this process's hold on the rotation lease; unguessable, so no other process renews it.
fn lease_token() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    hex::encode(bytes)
}

/// The process that holds the rotation lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LeaseHolder {
    #[serde(skip)]
    /// The holder's lease token (see [`RunIdentity::lease_token`]); never printed.
    pub token: String,
    /// `user@host (pid N)` of the holder.
    pub holder: String,
    /// The holder's host name.
    pub host: String,
    /// The holder's process id, on `host`.
    pub pid: i64,
    /// See [`RunIdentity::process_key`]; `None` for a lease taken by a rotor before 0.2.
    #[serde(skip)]
    pub process_key: Option<String>,
    /// When the holder took the lease.
    pub acquired_at: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// What a rotation's batch also records, in the batch's transaction.
#[derive(Clone, Copy, Debug)]
pub enum Checkpoint<'a> {
    /// A batch of the walk: counted towards the key range it came from, whose claim it renews.
    /// A process that lost the claim (paused past its expiry while another took over) writes
    /// nothing more of it.
    Range {
        /// The rotation's journal id.
        rotation: i64,
        /// The key range's number within the rotation.
        seq: i64,
        /// The claiming process's lease token.
        token: &'a str,
        /// The last id of the batch: where a process taking over the range goes on from.
        cursor: &'a str,
        /// Unix seconds until which the claim is extended.
        expires_at: i64,
    },
    /// A batch outside the walk (the final sweep, or a whole rotation in one instance): counted
    /// towards the rotation, renewing the rotation lease.
    Rotation {
        /// The rotation's journal id.
        rotation: i64,
        /// The token of the process holding the rotation lease.
        lease_token: &'a str,
        /// Unix seconds until which the lease is extended.
        lease_expires_at: i64,
    },
}

/// A key range of a rotation's wallets, claimed by one worker: ids after `after_id` up to and
/// including `upto_id` (`None`: unbounded), resuming after `cursor` if an earlier holder got
/// that far.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ClaimedRange {
    /// The range's number within the rotation.
    pub seq: i64,
    /// The range starts after this id; `None`: at the table's first id.
    pub after_id: Option<String>,
    /// The last id of the range, included; `None`: up to the table's end.
    pub upto_id: Option<String>,
    /// The last id an earlier holder finished; `None` if nobody got into the range yet.
    pub cursor: Option<String>,
}

/// Who is working on a rotation's key ranges right now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RangeProgress {
    /// Key ranges the rotation's walk is split into.
    pub ranges: u64,
    /// Ranges walked to their end.
    pub done: u64,
    /// The processes holding live claims.
    pub holders: Vec<String>,
}

pub(super) fn lease_held(held: &LeaseHolder) -> StoreError {
    let until = std::time::UNIX_EPOCH + std::time::Duration::from_secs(held.expires_at.max(0) as u64);
    StoreError::LeaseHeld {
        holder: held.holder.clone(),
        since: held.acquired_at.clone(),
        until: humantime::format_rfc3339_seconds(until).to_string(),
    }
}

/// The system clock in Unix seconds, the unit lease and claim expiries use; 0 if the clock is
/// before 1970.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Whether the process that recorded (`pid`, `key`) on this host is still running. A zombie is
/// not; nor is a live process with that pid whose [`RunIdentity::process_key`] differs (the pid
/// was reused: a new container's PID 1, a host rebooted since). Where that cannot be told, it is
/// taken to be alive: the lease or claim then runs out instead.
pub(super) fn process_alive(pid: i64, key: Option<&str>) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return !std::path::Path::new("/proc/self").exists();
    };
    // The state follows the parenthesised command name, which may itself contain ") ".
    let Some((_, fields)) = stat.rsplit_once(") ") else { return true };
    if fields.starts_with('Z') {
        return false;
    }
    match key.filter(|key| !key.is_empty()) {
        // Recorded by a rotor that knew only the pid.
        None => true,
        Some(recorded) => key_from_stat(fields).is_none_or(|actual| actual == recorded),
    }
}

/// `<boot id>:<start time>` of process `pid`, as [`RunIdentity::process_key`] records it.
fn process_key(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    key_from_stat(stat.rsplit_once(") ")?.1)
}

/// The key from the fields of `/proc/PID/stat` after the command name: field 22 of the file
/// (the 20th here) is the start time in clock ticks since boot, unique per boot with the pid.
fn key_from_stat(fields: &str) -> Option<String> {
    let started = fields.split_whitespace().nth(19)?;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(format!("{}:{started}", boot.trim()))
}
