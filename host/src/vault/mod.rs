//! Vault KV v2: the only way rotor talks to Vault (or OpenBao, which serves the same API), and
//! the one place that knows where a command's KEKs come from.
//!
//! [`VaultClient`] reads and writes KV v2 secrets for one mount ([`VaultConfig`] says where and
//! how to log in); [`KvBackend`] is what the component's `kv` import is served by: that client,
//! or the seed's read-only KEK from the environment ([`KvSource`] picks). Every failure is a
//! [`VaultError`], whose message names the problem and the fix.
//!
//! Secrets must not leak: the token and secret values are held in zeroized buffers, never appear
//! in `Debug` output or errors, and logs carry only method, route and status.
//!
//! Inside, each module uses only those above it in this list:
//!
//! * `retry`: which failed requests are sent again, and how long to wait;
//! * `error`: [`VaultError`], and decoding answers without quoting them;
//! * `config`: [`VaultConfig`] and [`VaultAuth`], from the Vault CLI's variables;
//! * `transport`: HTTP, headers, retries, and what a failed answer means;
//! * `auth`: the token: AppRole logins, renewal, telling a bad token from a missing grant;
//! * `identity`: whom Vault knows the token as ([`VaultIdentity`]);
//! * `client`: [`VaultClient`], its checks before work starts;
//! * `kv`: the KV v2 operations ([`KvSecret`], [`KvMetadata`]);
//! * `policy`: rotor's least-privilege policies ([`policy_hcl`]) and what a command needs of the
//!   token's ([`require_policies`]);
//! * `backend`: Vault, or the seed's KEK from the environment ([`KvSource`], [`KvBackend`]).

mod auth;
mod backend;
mod client;
mod config;
mod error;
mod identity;
mod kv;
mod logical;
mod policy;
mod retry;
mod transport;

pub use auth::TokenStats;
pub use backend::{EnvKek, KekUse, KvBackend, KvFuture, KvSource, KvStore, PendingEnvKek, kek_from_var};
pub use client::VaultClient;
pub use config::{AppRole, VaultAuth, VaultConfig};
pub use error::VaultError;
pub use identity::VaultIdentity;
pub use kv::{KvData, KvMetadata, KvSecret, KvVersionMeta};
pub use policy::{PolicyRole, VaultWrites, policy_hcl, require_policies};
pub use retry::{DEFAULT_RETRY_FOR, RETRY_FOR_VAR, Replay, Tries, parse_retry_for};
