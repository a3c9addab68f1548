//! rotor's host runner: loads the crypto-core component and supplies it Vault KV v2 and
//! wallet-store access as WIT imports, within the grants and limits of each run.
//!
//! * [`vault`]: the Vault KV v2 HTTP client, failing with [`vault_error`]'s one error type.
//! * [`store`]: the wallet table and rotor's journal, on SQLite or PostgreSQL.
//! * [`bindings`]: the WIT bindings; [`imports`]: the host side of the imports, checked
//!   against [`grants`] and [`limits`]; [`component`]: compiling and instantiating components,
//!   with [`component_cache`] and [`inspect`]; [`cross_check`]: the reference component
//!   checking another one's batches.
//! * [`vault_auth`]: token and AppRole login, token renewal; [`vault_policy`]: what a command
//!   needs of the token's policies; [`vault_retry`]: riding out Vault hiccups; [`kv_backend`]:
//!   Vault, or the seed's KEK from the environment.
//! * [`metrics`]: Prometheus metrics; [`exporter`]: `rotor serve`.
//! * [`rotation`]: a rotation spread over parallel workers, which [`walk`] hands key ranges;
//!   [`validate`]: validation spread the same way.
//! * [`bench`]: `rotor bench`, which runs the `rotor-bench` binary (the bench/ crate).
//! * [`report`]: what commands report and how they end; [`plan`]: batch and worker defaults.
//! * [`config`]: `rotor.toml`; [`cli`]: the `rotor` command line; [`audit`]: `rotor audit`;
//!   [`abort`]: `rotor abort`; [`demo`]: `rotor demo`, with the OpenBao dev server and the
//!   legacy wallets it starts from; [`shutdown`]: stopping cleanly on SIGTERM/SIGINT;
//!   [`durations`]: durations as operators read them; [`terminal`]: logging, usage errors and
//!   exit codes shared by the `rotor` and `rotor-bench` binaries.
#![deny(unsafe_code)]

pub mod abort;
pub mod app;
pub mod audit;
pub mod bench;
pub mod bindings;
pub mod cli;
pub mod component;
pub mod component_cache;
pub mod config;
pub mod cross_check;
pub mod demo;
pub mod durations;
pub mod exporter;
pub mod grants;
pub mod imports;
pub mod inspect;
pub mod kv_backend;
pub mod limits;
pub mod metrics;
pub mod plan;
pub mod progress;
pub mod report;
pub mod rotation;
pub mod shutdown;
pub mod store;
pub mod terminal;
pub mod validate;
pub mod vault;
pub mod vault_auth;
pub mod vault_error;
pub mod vault_policy;
pub mod vault_retry;
pub mod walk;
