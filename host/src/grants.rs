//! What one run of a component may touch. The host checks every import call against these
//! grants; the defaults give each command exactly what it needs.

use std::fmt;

/// The capabilities of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grants {
    /// KV paths the component may read: an exact path, or a folder ending in `/`.
    pub kv_read: Vec<String>,
    /// KV paths the component may write.
    pub kv_write: Vec<String>,
    /// May insert or replace wallets.
    pub wallets_write: bool,
    /// May record rotations in rotor's journal.
    pub journal_write: bool,
}

/// Which way a run uses its grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// validate, open, history, dry runs: nothing may change.
    ReadOnly,
    /// rotate, seal, migrate-kek.
    ReadWrite,
}

impl Grants {
    /// The KEK at `key_path`, its archive folder, and the wallet table; writable or not.
    pub fn for_key(key_path: &str, access: Access) -> Grants {
        let paths = vec![key_path.to_owned(), format!("{key_path}-archive/")];
        let write = access == Access::ReadWrite;
        Grants {
            kv_write: if write { paths.clone() } else { Vec::new() },
            kv_read: paths,
            wallets_write: write,
            journal_write: write,
        }
    }

    /// Nothing at all: for the reference component's cross-check instance, which only runs
    /// the pure `codec` export.
    pub fn none() -> Grants {
        Grants { kv_read: Vec::new(), kv_write: Vec::new(), wallets_write: false, journal_write: false }
    }

    /// Whether the component may read the KV path `path`: a grant names it, or ends in `/` and is
    /// a folder holding it.
    pub fn may_read(&self, path: &str) -> bool {
        covers(&self.kv_read, path)
    }

    /// Whether the component may write the KV path `path` (same rule as [`Grants::may_read`]).
    pub fn may_write(&self, path: &str) -> bool {
        covers(&self.kv_write, path)
    }
}

fn covers(grants: &[String], path: &str) -> bool {
    grants.iter().any(|grant| match grant.strip_suffix('/') {
        Some(folder) => path == folder || path.starts_with(grant.as_str()),
        None => path == grant,
    })
}

impl fmt::Display for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |paths: &[String]| if paths.is_empty() { "nothing".to_owned() } else { paths.join(", ") };
        write!(
            f,
            "read: {}; write: {}; wallets: {}",
            list(&self.kv_read),
            list(&self.kv_write),
            if self.wallets_write { "read-write" } else { "read-only" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_cover_the_key_and_its_archive_only() {
        let grants = Grants::for_key("ibn/encryption-key", Access::ReadWrite);
        assert!(grants.may_read("ibn/encryption-key"));
        assert!(grants.may_write("ibn/encryption-key-archive/v3"));
        assert!(grants.may_read("ibn/encryption-key-archive/"));
        assert!(!grants.may_read("ibn/encryption-key2"));
        assert!(!grants.may_read("ibn/other"));
        assert!(!grants.may_read("ibn/encryption-key/child"));
        let read_only = Grants::for_key("k", Access::ReadOnly);
        assert!(read_only.may_read("k") && !read_only.may_write("k") && !read_only.wallets_write);
    }
}
