# rotor-auditor: read-only. Enough for `rotor validate`, `rotor status`, `rotor history`,
# `rotor open` and `rotor serve` (metrics); `rotor rotate`, `rollback` and `prune` are refused
# before they change anything. For KV v2 at `secret/` and the KEK at `ibn/encryption-key`.
#
#   bao policy write rotor-auditor policies/rotor-auditor.hcl

path "secret/data/ibn/encryption-key" {
  capabilities = ["read"]
}

path "secret/metadata/ibn/encryption-key" {
  capabilities = ["read"]
}

path "secret/data/ibn/encryption-key-archive/*" {
  capabilities = ["read"]
}

path "secret/metadata/ibn/encryption-key-archive/*" {
  capabilities = ["list"]
}

path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}

path "sys/capabilities-self" {
  capabilities = ["update"]
}
