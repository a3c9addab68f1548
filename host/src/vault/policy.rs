//! rotor's least-privilege Vault policies ([`policy_hcl`], printed by `rotor policy`), and what a
//! command needs of the token's policies, checked before it changes anything.
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
    /// `rotate --stage`, `unstage`: writing and removing the staged KEK.
    Stage,
}

impl VaultWrites {
    fn command(self) -> &'static str {
        match self {
            VaultWrites::Rotation => "rotate",
            VaultWrites::Prune => "prune",
            VaultWrites::Stage => "rotate --stage",
        }
    }

    /// The API paths and capabilities, as the runner's [`GRANTS`] give them. An archive entry
    /// that does not exist yet stands for the whole archive folder.
    /// With `root` (`[tenants] derive-from`), the root and its archive too: a new version is
    /// derived from the root's current one, which the first rotation stores.
    fn needs(
        self,
        mount: &str,
        key_path: &str,
        root: Option<&str>,
    ) -> Vec<(String, &'static [&'static str])> {
        let mut needs = self.key_needs(mount, key_path);
        if let Some(root) = root {
            needs.push((format!("{mount}/data/{root}"), &["read", "create", "update"]));
            needs.push((format!("{mount}/data/{root}-archive/v0"), &["read", "create", "update"]));
        }
        needs
    }

    /// [`VaultWrites::needs`] at the key path.
    fn key_needs(self, mount: &str, key_path: &str) -> Vec<(String, &'static [&'static str])> {
        let archive_entry = format!("{key_path}-archive/v0");
        let staged = format!("{mount}/data/{key_path}-staged");
        if self == VaultWrites::Stage {
            return vec![
                (format!("{mount}/data/{key_path}"), &["read"]),
                (staged, &["read", "create", "update"]),
                (format!("{mount}/metadata/{key_path}-staged"), &["delete"]),
            ];
        }
        let mut needs: Vec<(String, &'static [&'static str])> = vec![
            (format!("{mount}/data/{key_path}"), &["read", "create", "update"]),
            (format!("{mount}/metadata/{key_path}"), &["read"]),
            (format!("{mount}/data/{archive_entry}"), &["read", "create", "update"]),
            (format!("{mount}/metadata/{key_path}-archive/"), &["list"]),
        ];
        needs.push((format!("{mount}/data/{key_path}-history/00000000"), &["create", "read"]));
        // A staged KEK must become the next version: a rotation that could not see it would
        // give that number another key.
        needs.push((staged, &["read"]));
        if self == VaultWrites::Prune {
            needs.push((format!("{mount}/destroy/{key_path}"), &["update"]));
            needs.push((format!("{mount}/metadata/{archive_entry}"), &["delete"]));
            needs.push((format!("{mount}/data/{key_path}-receipts/r0"), &["create"]));
        }
        needs
    }
}

/// Fails, naming the first path the token lacks a capability on, if its policies do not allow
/// `writes`. A token that may not ask (no `sys/capabilities-self` grant) is let through: Vault
/// then refuses the request itself, also naming the path. `root`: the root KEK tenants' KEKs
/// are derived from, if they are.
pub async fn require_policies(
    vault: &VaultClient,
    key_path: &str,
    root: Option<&str>,
    writes: VaultWrites,
) -> anyhow::Result<()> {
    let needs = writes.needs(vault.mount(), key_path, root);
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
                 needs (granted: {}); nothing was changed. Log in with a role that has the policy \
                 `rotor policy runner` prints",
                missing.join(", "),
                writes.command(),
                if has.is_empty() { "nothing".to_owned() } else { has.join(", ") }
            );
        }
    }
    Ok(())
}

/// Whom a Vault policy that `rotor policy` prints is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyRole {
    /// `rotate`, `rollback`, `prune`, `migrate-kek`, `seal`, and every read-only command.
    Runner,
    /// Read-only: `validate`, `status`, `history`, `open`, `audit`, `serve`; `rotate`,
    /// `rollback` and `prune` are refused before they change anything.
    Auditor,
    /// An application that reads KEKs through @rotor/codec's `Keyring.fromVault()`: the current
    /// KEK and every older version by number, nothing else.
    App,
}

impl PolicyRole {
    /// The policy's name, as `bao policy write` takes it.
    pub fn policy_name(self) -> &'static str {
        match self {
            PolicyRole::Runner => "rotor-runner",
            PolicyRole::Auditor => "rotor-auditor",
            PolicyRole::App => "rotor-app",
        }
    }

    /// What `rotor policy <role>` is called with.
    pub fn arg(self) -> &'static str {
        match self {
            PolicyRole::Runner => "runner",
            PolicyRole::Auditor => "auditor",
            PolicyRole::App => "app",
        }
    }
}

/// One path a policy may grant: `{mount}` and `{key}` stand for the KV mount and the key path.
struct Grant {
    path: &'static str,
    /// Why anyone granted it needs it, printed above it.
    why: &'static str,
    /// Why a runner needs the writes it is granted there, printed in the runner's policy only.
    writes: &'static str,
    runner: &'static [&'static str],
    auditor: &'static [&'static str],
    app: &'static [&'static str],
}

impl Grant {
    fn capabilities(&self, role: PolicyRole) -> &'static [&'static str] {
        match role {
            PolicyRole::Runner => self.runner,
            PolicyRole::Auditor => self.auditor,
            PolicyRole::App => self.app,
        }
    }

    /// The comment above the path in `role`'s policy.
    fn comment(&self, role: PolicyRole) -> String {
        match role {
            PolicyRole::Runner => format!("{} {}", self.why, self.writes).trim().to_owned(),
            _ => self.why.to_owned(),
        }
    }
}

/// Every path any of rotor's policies grants, and to whom: the one place the policies `rotor
/// policy` prints are written. The paths the check [`require_policies`] asks about
/// ([`VaultWrites::needs`]) are tested against the runner's grants here.
const GRANTS: &[Grant] = &[
    Grant {
        path: "{mount}/data/{key}",
        why: "The current KEK, and older versions still in the KV history (`?version=N`).",
        writes: "rotate stores each new one (check-and-set on its version).",
        runner: &["read", "create", "update"],
        auditor: &["read"],
        app: &["read"],
    },
    Grant {
        path: "{mount}/metadata/{key}",
        why: "Its version history: the current version's age (--if-older-than, metrics) and what \
              prune keeps.",
        writes: "",
        runner: &["read"],
        auditor: &["read"],
        app: &[],
    },
    Grant {
        path: "{mount}/destroy/{key}",
        why: "",
        writes: "prune destroys the KV versions of the KEK that no wallet uses any more.",
        runner: &["update"],
        auditor: &[],
        app: &[],
    },
    Grant {
        path: "{mount}/data/{key}-archive/*",
        why: "rotor's archive of every KEK version (<key-path>-archive/v<N>: wallets not moved yet, \
              or restored from a backup, name versions the KV history may have dropped), and the \
              seed's timestamped archives.",
        writes: "rotate adds entries (create-only, re-checked after a crash, hence update).",
        runner: &["read", "create", "update"],
        auditor: &["read"],
        app: &["read"],
    },
    Grant {
        path: "{mount}/metadata/{key}-archive/*",
        why: "Listing the archive: the seed's archives are found by listing.",
        writes: "prune deletes the entries of destroyed versions.",
        runner: &["list", "delete"],
        auditor: &["list"],
        app: &[],
    },
    Grant {
        path: "{mount}/data/{key}-staged",
        why: "A KEK staged as the next version (`rotor rotate --stage`): readers accept it before \
              `rotor promote` makes it current, and a rotation must store it as that version.",
        writes: "rotate --stage writes it (check-and-set).",
        runner: &["read", "create", "update"],
        auditor: &["read"],
        app: &["read"],
    },
    Grant {
        path: "{mount}/metadata/{key}-staged",
        why: "",
        writes: "promote and unstage remove the staged copy.",
        runner: &["delete"],
        auditor: &[],
        app: &[],
    },
    Grant {
        path: "{mount}/data/{key}-receipts/*",
        why: "Receipts of destroyed KEK versions (<key-path>-receipts/<time>): which versions, their \
              fingerprints, the zero row counts that allowed it, who and when.",
        writes: "prune writes one per run that destroys anything (create-only: a receipt is never \
                 changed).",
        runner: &["create", "read"],
        auditor: &["read"],
        app: &[],
    },
    Grant {
        path: "{mount}/metadata/{key}-receipts/*",
        why: "Listing the receipts: one whose history entry could not be written is appended to the \
              history by the next command that writes it.",
        writes: "",
        runner: &["list"],
        auditor: &["list"],
        app: &[],
    },
    Grant {
        path: "{mount}/data/{key}-history/*",
        why: "The history chained in Vault (<key-path>-history/NNNNNNNN): each closed rotation and \
              each prune's receipt, holding the hash of the entry before; `rotor history` checks it \
              against the journal.",
        writes: "rotate, rollback, abort and prune append entries (create-only: an entry is never \
                 changed).",
        runner: &["create", "read"],
        auditor: &["read"],
        app: &[],
    },
    Grant {
        path: "{mount}/data/{root}",
        why: "The root KEK every tenant's KEK is derived from ([tenants] derive-from): a tenant's key \
              path holds records naming a root version, not keys.",
        writes: "the first rotation stores the root's first version, rotate --new-root the next.",
        runner: &["read", "create", "update"],
        auditor: &["read"],
        app: &["read"],
    },
    Grant {
        path: "{mount}/data/{root}-archive/*",
        why: "Every root version (<root>-archive/v<N>): tenant versions derived from an older root \
              still open after the KV history drops it.",
        writes: "rotate adds entries (create-only, re-checked after a crash, hence update).",
        runner: &["read", "create", "update"],
        auditor: &["read"],
        app: &["read"],
    },
    Grant {
        path: "auth/token/lookup-self",
        why: "rotor checks its token at start, renews it during long runs, and asks whether its \
              policy allows a command before the command changes anything.",
        writes: "",
        runner: &["read"],
        auditor: &["read"],
        app: &[],
    },
    Grant {
        path: "auth/token/renew-self",
        why: "",
        writes: "",
        runner: &["update"],
        auditor: &["update"],
        app: &[],
    },
    Grant {
        path: "sys/capabilities-self",
        why: "",
        writes: "",
        runner: &["update"],
        auditor: &["update"],
        app: &[],
    },
];

/// The HCL of `role`'s policy for KV v2 mounted at `mount` and the KEK at `key_path`: what
/// `rotor policy` prints, for `bao policy write <name> -`.
/// With `root` (`[tenants] derive-from`), the root KEK's paths are granted too.
pub fn policy_hcl(role: PolicyRole, mount: &str, key_path: &str, root: Option<&str>) -> String {
    let name = role.policy_name();
    let purpose = match role {
        PolicyRole::Runner => {
            "what `rotor rotate`, `rollback`, `prune`, `migrate-kek`, `seal` and every read-only command \
             need, and nothing more."
        }
        PolicyRole::Auditor => {
            "read-only: `validate`, `status`, `history`, `open`, `audit` and `serve`; `rotate`, \
             `rollback` and `prune` are refused before they change anything."
        }
        PolicyRole::App => {
            "an application reading KEKs with @rotor/codec's `Keyring.fromVault()`: the current KEK \
             and every older version by number, and the staged one. It cannot write, list or destroy \
             a KEK."
        }
    };
    let mut hcl = String::new();
    let header = format!(
        "{name}: {purpose} For KV v2 mounted at `{mount}/` and the KEK at `{key_path}`, as \
         `rotor policy {}` printed it.",
        role.arg()
    );
    for line in wrap_comment(&header) {
        hcl.push_str(&format!("# {line}\n"));
    }
    hcl.push_str(&format!("#\n#   rotor policy {} | bao policy write {name} -\n", role.arg()));
    for grant in GRANTS {
        let capabilities = grant.capabilities(role);
        let root_needed = grant.path.contains("{root}");
        if capabilities.is_empty() || (root_needed && root.is_none()) {
            continue;
        }
        hcl.push('\n');
        let comment = grant.comment(role);
        if !comment.is_empty() {
            for line in wrap_comment(&comment) {
                hcl.push_str(&format!("# {line}\n"));
            }
        }
        let path = grant
            .path
            .replace("{mount}", mount)
            .replace("{key}", key_path)
            .replace("{root}", root.unwrap_or_default());
        let quoted: Vec<String> = capabilities.iter().map(|c| format!("\"{c}\"")).collect();
        hcl.push_str(&format!("path \"{path}\" {{\n  capabilities = [{}]\n}}\n", quoted.join(", ")));
    }
    if role == PolicyRole::App {
        hcl.push_str(&format!(
            "\n# While legacy wallets from before rotor's first rotation remain that the seed script's own\n\
             # archives must open, the Keyring lists {mount}/metadata/{key_path}-archive/ to find them:\n\
             # add `list` there, or pass `{{ seedArchives: false }}` to not ask.\n"
        ));
    }
    hcl
}

/// `text` in lines of at most 96 characters, for a comment.
fn wrap_comment(text: &str) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("never empty");
        if !line.is_empty() && line.len() + 1 + word.len() > 96 {
            lines.push(word.to_owned());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_needs_the_history_and_prune_also_destroy_delete_and_receipts() {
        let paths = |writes: VaultWrites| -> Vec<String> {
            writes.needs("secret", "ibn/encryption-key", None).into_iter().map(|(path, _)| path).collect()
        };
        let rotation = paths(VaultWrites::Rotation);
        assert_eq!(
            rotation,
            [
                "secret/data/ibn/encryption-key",
                "secret/metadata/ibn/encryption-key",
                "secret/data/ibn/encryption-key-archive/v0",
                "secret/metadata/ibn/encryption-key-archive/",
                "secret/data/ibn/encryption-key-history/00000000",
                "secret/data/ibn/encryption-key-staged",
            ]
        );
        let prune = paths(VaultWrites::Prune);
        assert_eq!(prune[..rotation.len()], rotation[..]);
        assert_eq!(
            prune[rotation.len()..],
            [
                "secret/destroy/ibn/encryption-key",
                "secret/metadata/ibn/encryption-key-archive/v0",
                "secret/data/ibn/encryption-key-receipts/r0"
            ]
        );
        let writes = VaultWrites::Prune.needs("secret", "k", None);
        assert_eq!(writes[0].1, ["read", "create", "update"]);
        assert_eq!(writes.last().unwrap().1, ["create"]);
    }

    /// Whether `role`'s policy grants every one of `wanted` on the concrete API `path`.
    fn grants(role: PolicyRole, path: &str, wanted: &[&str]) -> bool {
        GRANTS.iter().any(|grant| {
            let pattern = grant
                .path
                .replace("{mount}", "secret")
                .replace("{key}", "ibn/encryption-key")
                .replace("{root}", "ibn/tenant-root");
            let matches = match pattern.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => path == pattern,
            };
            matches && wanted.iter().all(|want| grant.capabilities(role).contains(want))
        })
    }

    #[test]
    fn the_runner_policy_grants_everything_the_policy_check_asks_for() {
        for writes in [VaultWrites::Rotation, VaultWrites::Prune, VaultWrites::Stage] {
            for (path, wanted) in writes.needs("secret", "ibn/encryption-key", Some("ibn/tenant-root")) {
                assert!(grants(PolicyRole::Runner, &path, wanted), "{writes:?}: {wanted:?} on {path}");
                if wanted.iter().any(|c| !["read", "list"].contains(c)) {
                    assert!(!grants(PolicyRole::Auditor, &path, wanted), "the auditor may {wanted:?} {path}");
                }
            }
        }
    }

    #[test]
    fn the_auditor_may_do_less_than_the_runner_and_the_app_less_than_the_auditor() {
        for grant in GRANTS {
            let (runner, auditor, app) = (grant.runner, grant.auditor, grant.app);
            assert!(auditor.iter().all(|c| runner.contains(c)), "{}", grant.path);
            assert!(app.iter().all(|c| auditor.contains(c)), "{}", grant.path);
            for write in ["create", "update", "delete"] {
                let on_kv = grant.path.starts_with("{mount}");
                assert!(!(on_kv && (auditor.contains(&write) || app.contains(&write))), "{}", grant.path);
            }
        }
    }

    #[test]
    fn a_policy_is_written_for_the_configured_mount_and_key_path() {
        let runner = policy_hcl(PolicyRole::Runner, "kv", "team/kek", None);
        assert!(runner.starts_with("# rotor-runner: "), "{runner}");
        assert!(runner.contains("#   rotor policy runner | bao policy write rotor-runner -\n"), "{runner}");
        assert!(
            runner.contains(
                "path \"kv/data/team/kek\" {\n  capabilities = [\"read\", \"create\", \"update\"]\n}"
            )
        );
        assert!(runner.contains("path \"kv/destroy/team/kek\""), "{runner}");
        assert!(runner.contains("path \"kv/metadata/team/kek-archive/*\""), "{runner}");
        assert!(!runner.contains("secret/") && !runner.contains("ibn/"), "{runner}");
        let root_grants = GRANTS.iter().filter(|grant| grant.path.contains("{root}")).count();
        assert_eq!(runner.matches("path \"").count(), GRANTS.len() - root_grants);
        assert_eq!(runner.matches('{').count(), runner.matches('}').count());

        let app = policy_hcl(PolicyRole::App, "kv", "team/kek", None);
        assert_eq!(app.matches("\npath \"").count(), 3, "{app}");
        assert!(app.contains("path \"kv/data/team/kek-staged\""), "{app}");
        assert!(!app.contains("\"update\"") && !app.contains("\"list\""), "{app}");
        assert!(app.contains("kv/metadata/team/kek-archive/"), "the note on listing: {app}");
        let derived = policy_hcl(PolicyRole::App, "kv", "team/{tenant}/kek", Some("team/root"));
        assert!(
            derived.contains("path \"kv/data/team/root\" {\n  capabilities = [\"read\"]\n}"),
            "{derived}"
        );
        assert!(derived.contains("path \"kv/data/team/root-archive/*\""), "{derived}");
        for hcl in
            [runner, app, derived, policy_hcl(PolicyRole::Auditor, "secret", "ibn/encryption-key", None)]
        {
            assert!(hcl.lines().all(|line| line.len() <= 100), "{hcl}");
        }
    }
}
