//! What a command needs of the Vault token's policies, checked before it changes anything.
//!
//! Without this, a token that may read but not write (the auditor's) would get as far as
//! recording a rotation in the journal before Vault refused the first archive write. Asking
//! `sys/capabilities-self` first turns that into a refusal that names the path, the missing
//! capabilities and the policy file that grants them, with nothing started.

use anyhow::bail;

use super::client::VaultClient;

/// The commands that write to Vault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaultWrites {
    /// `rotate`, `rollback`: new KEK versions at the key path and in its archive.
    Rotation,
    /// `prune`: destroying KEK versions and archive entries.
    Prune,
}

impl VaultWrites {
    fn command(self) -> &'static str {
        match self {
            VaultWrites::Rotation => "rotate",
            VaultWrites::Prune => "prune",
        }
    }

    /// The API paths and capabilities, as in `policies/rotor-runner.hcl`. An archive entry that
    /// does not exist yet stands for the whole archive folder.
    fn needs(self, mount: &str, key_path: &str) -> Vec<(String, &'static [&'static str])> {
        let archive_entry = format!("{key_path}-archive/v0");
        let mut needs: Vec<(String, &'static [&'static str])> = vec![
            (format!("{mount}/data/{key_path}"), &["read", "create", "update"]),
            (format!("{mount}/metadata/{key_path}"), &["read"]),
            (format!("{mount}/data/{archive_entry}"), &["read", "create", "update"]),
            (format!("{mount}/metadata/{key_path}-archive/"), &["list"]),
        ];
        if self == VaultWrites::Prune {
            needs.push((format!("{mount}/destroy/{key_path}"), &["update"]));
            needs.push((format!("{mount}/metadata/{archive_entry}"), &["delete"]));
        }
        needs
    }
}

/// Fails, naming the first path the token lacks a capability on, if its policies do not allow
/// `writes`. A token that may not ask (no `sys/capabilities-self` grant) is let through: Vault
/// then refuses the request itself, also naming the path.
pub async fn require_policies(
    vault: &VaultClient,
    key_path: &str,
    writes: VaultWrites,
) -> anyhow::Result<()> {
    let needs = writes.needs(vault.mount(), key_path);
    let paths: Vec<String> = needs.iter().map(|(path, _)| path.clone()).collect();
    let Some(granted) = vault.capabilities(&paths).await? else {
        tracing::debug!("the Vault token may not read its own capabilities; skipping the policy check");
        return Ok(());
    };
    for (path, wanted) in &needs {
        let has = granted.get(path).map(Vec::as_slice).unwrap_or_default();
        if has.iter().any(|c| c == "root") {
            continue;
        }
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|want| has.iter().all(|c| c != want) || has.iter().any(|c| c == "deny"))
            .collect();
        if !missing.is_empty() {
            bail!(
                "permission denied on {path}: the Vault token's policies do not grant {} there, which `rotor {}` \
                 needs (granted: {}); nothing was changed. Log in with a role that has policies/rotor-runner.hcl",
                missing.join(", "),
                writes.command(),
                if has.is_empty() { "nothing".to_owned() } else { has.join(", ") }
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_needs_what_rotation_needs_and_destroy_and_delete() {
        let paths = |writes: VaultWrites| -> Vec<String> {
            writes.needs("secret", "ibn/encryption-key").into_iter().map(|(path, _)| path).collect()
        };
        let rotation = paths(VaultWrites::Rotation);
        assert_eq!(
            rotation,
            [
                "secret/data/ibn/encryption-key",
                "secret/metadata/ibn/encryption-key",
                "secret/data/ibn/encryption-key-archive/v0",
                "secret/metadata/ibn/encryption-key-archive/",
            ]
        );
        let prune = paths(VaultWrites::Prune);
        assert_eq!(prune[..rotation.len()], rotation[..]);
        assert_eq!(
            prune[rotation.len()..],
            ["secret/destroy/ibn/encryption-key", "secret/metadata/ibn/encryption-key-archive/v0"]
        );
        let writes = VaultWrites::Prune.needs("secret", "k");
        assert_eq!(writes[0].1, ["read", "create", "update"]);
        assert_eq!(writes.last().unwrap().1, ["delete"]);
    }
}
