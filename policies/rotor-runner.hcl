# rotor-runner: what `rotor rotate`, `rotor rollback`, `rotor prune` (and `migrate-kek`, `seal`,
# and every read-only command) need, and nothing more. For KV v2 mounted at `secret/` and the KEK
# at `ibn/encryption-key`; with --kv-mount or --key-path, change the paths to match.
#
#   bao policy write rotor-runner policies/rotor-runner.hcl
#
# Before changing anything, rotate/rollback/prune ask Vault (sys/capabilities-self) whether this
# policy is in place, and name the path and capability that is missing.

# The current KEK: read it, store each new one (check-and-set on its version).
path "secret/data/ibn/encryption-key" {
  capabilities = ["read", "create", "update"]
}

# Its version history: the current version's age (--if-older-than, metrics) and what prune keeps.
path "secret/metadata/ibn/encryption-key" {
  capabilities = ["read"]
}

# prune: destroy KV versions of the KEK that no wallet uses any more.
path "secret/destroy/ibn/encryption-key" {
  capabilities = ["update"]
}

# rotor's archive of every KEK version (<key-path>-archive/v<N>) and the seed's timestamped
# archives: read them, add entries (create-only, re-checked after a crash, hence update).
path "secret/data/ibn/encryption-key-archive/*" {
  capabilities = ["read", "create", "update"]
}

# List the archive; prune deletes entries of destroyed versions.
path "secret/metadata/ibn/encryption-key-archive/*" {
  capabilities = ["list", "delete"]
}

# rotor checks its token at start, renews it during long runs, and checks this policy.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}

path "sys/capabilities-self" {
  capabilities = ["update"]
}
