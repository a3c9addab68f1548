//! What one run of a component may touch. The host checks every import call against these
//! grants; each command gets exactly what it needs (`seal` cannot destroy a KEK, `open` cannot
//! write anything).

use std::fmt;

/// What a command does with its grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// validate, open, history, dry runs, audits: nothing may change.
    ReadOnly,
    /// rotate, rollback: store the next KEK, archive KEKs, move wallets, record the rotation.
    Rotate,
    /// seal: write the one wallet `id`, under the current KEK.
    Seal {
        /// The only wallet the command may write.
        id: String,
    },
    /// migrate-kek: store the operator's key as the first KEK, and archive it.
    ImportKek,
    /// prune: destroy KEK versions no wallet names.
    Prune,
}

/// Which wallets a run may write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalletWrites {
    /// None.
    None,
    /// A rotation's batches (`replace-batch`, `replace-current-batch`, `submit-current-batch`).
    Batches,
    /// This one wallet (`put`).
    One(String),
}

/// The capabilities of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grants {
    /// The one key path the run's keys come from.
    pub key_path: String,
    /// May store the next KEK version.
    pub kek_create: bool,
    /// May copy KEK versions to the archive.
    pub kek_archive: bool,
    /// May destroy KEK versions (the host still refuses one that rows name).
    pub kek_destroy: bool,
    /// May store the key the operator gave the command.
    pub kek_import: bool,
    /// Which wallets it may write.
    pub wallets: WalletWrites,
    /// May record rotations in rotor's journal.
    pub journal_write: bool,
}

impl Grants {
    /// What `access` needs of the KEK at `key_path` and of the wallet table.
    pub fn for_key(key_path: &str, access: &Access) -> Grants {
        let mut grants = Grants {
            key_path: key_path.to_owned(),
            kek_create: false,
            kek_archive: false,
            kek_destroy: false,
            kek_import: false,
            wallets: WalletWrites::None,
            journal_write: false,
        };
        match access {
            Access::ReadOnly => {}
            Access::Rotate => {
                grants.kek_create = true;
                grants.kek_archive = true;
                grants.wallets = WalletWrites::Batches;
                grants.journal_write = true;
            }
            Access::Seal { id } => grants.wallets = WalletWrites::One(id.clone()),
            Access::ImportKek => {
                grants.kek_import = true;
                grants.kek_archive = true;
            }
            Access::Prune => grants.kek_destroy = true,
        }
        grants
    }
}

impl fmt::Display for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kek: Vec<&str> = [
            (self.kek_create, "store the next version"),
            (self.kek_archive, "archive"),
            (self.kek_destroy, "destroy unused versions"),
            (self.kek_import, "import the given key"),
        ]
        .into_iter()
        .filter_map(|(granted, what)| granted.then_some(what))
        .collect();
        let kek = if kek.is_empty() { "read".to_owned() } else { format!("read, {}", kek.join(", ")) };
        let wallets = match &self.wallets {
            WalletWrites::None => "read-only".to_owned(),
            WalletWrites::Batches => "a rotation's batches".to_owned(),
            WalletWrites::One(id) => format!("wallet {id:?} only"),
        };
        write!(f, "KEK at {}: {kek}; wallets: {wallets}", self.key_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_command_gets_only_what_it_needs() {
        let read = Grants::for_key("k", &Access::ReadOnly);
        assert!(!read.kek_create && !read.kek_destroy && !read.kek_import && !read.journal_write);
        assert_eq!(read.wallets, WalletWrites::None);
        let seal = Grants::for_key("k", &Access::Seal { id: "w-1".into() });
        assert!(!seal.kek_create && !seal.kek_destroy && !seal.kek_archive && !seal.journal_write);
        assert_eq!(seal.wallets, WalletWrites::One("w-1".into()));
        let prune = Grants::for_key("k", &Access::Prune);
        assert!(prune.kek_destroy && !prune.kek_create && prune.wallets == WalletWrites::None);
        let rotate = Grants::for_key("k", &Access::Rotate);
        assert!(rotate.kek_create && rotate.kek_archive && !rotate.kek_destroy && rotate.journal_write);
        assert_eq!(rotate.wallets, WalletWrites::Batches);
        assert_eq!(
            rotate.to_string(),
            "KEK at k: read, store the next version, archive; wallets: a rotation's batches"
        );
    }
}
