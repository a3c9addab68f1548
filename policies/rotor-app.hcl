# rotor-app: what an application that reads and writes wallets with @rotor/codec's Keyring
# (`Keyring.fromVault()`, bindings/js) needs, and nothing more: it reads the current KEK and
# every older version by number. It cannot write, rotate, list or destroy a KEK. For KV v2 at
# `secret/` and the KEK at `ibn/encryption-key`; with another mount or key path, change the
# paths to match.
#
#   bao policy write rotor-app policies/rotor-app.hcl
#   bao token create -policy=rotor-app          # or an AppRole role with token_policies=rotor-app

# The current KEK, and its older versions still in the KV history (`?version=N`).
path "secret/data/ibn/encryption-key" {
  capabilities = ["read"]
}

# rotor's archive of every KEK version, `<key-path>-archive/v<N>`: wallets not moved yet, or
# restored from a backup, name versions that KV's history (10 by default) may have dropped.
path "secret/data/ibn/encryption-key-archive/*" {
  capabilities = ["read"]
}

# Only while legacy wallets from before rotor's first rotation remain that the seed script's own
# archives (`<key-path>-archive/<unix-ms>`, found by listing) must open, uncomment this; without
# it the Keyring is refused the listing and leaves those archives out (or pass
# `{ seedArchives: false }` to not ask).
#
# path "secret/metadata/ibn/encryption-key-archive/*" {
#   capabilities = ["list"]
# }
