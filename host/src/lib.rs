//! rotor's host: loads the crypto-core component and supplies it Vault KV v2, the wallet
//! store, rotor's journal and progress reporting as WIT imports, within the grants and limits
//! of each run. ARCHITECTURE.md draws the layers; from the bottom up:
//!
//! * settings: [`plan`] (batch size, workers, lease: one [`plan::RunPlan`] per command),
//!   [`limits`], [`grants`], [`config`] (`rotor.toml`).
//! * backends: [`store`] (the wallet table and rotor's journal, on SQLite or PostgreSQL) and
//!   [`vault`] (Vault KV v2 with one error type, and the backend a command's KEKs come from).
//! * [`coordination`]: the rotation lease and the key ranges a rotation's workers walk.
//! * [`capabilities`]: one module per WIT import, each with its context, `Host` impls and
//!   `add_to_linker`.
//! * the runner: [`app`] (what every command opens), [`component`] (compiling, linking and
//!   instantiating, with [`component_cache`], [`inspect`] and [`fit`]), [`cross_check`], [`bindings`].
//! * command support: [`report`], [`metrics`], [`shutdown`], [`durations`], [`progress`].
//! * commands: [`rotation`], [`validate`], [`abort`], [`audit`], [`status`], [`history`],
//!   [`demo`] (with the OpenBao dev server and the legacy wallets it starts from), [`exporter`] (`rotor serve`), [`bench`].
//! * front ends: [`cli`] (the `rotor` command line) and [`terminal`] (logging, usage errors and
//!   exit codes, shared with `rotor-bench`).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod abort;
pub mod app;
pub mod audit;
pub mod bench;
pub mod bindings;
pub mod capabilities;
pub mod cli;
pub mod component;
pub mod component_cache;
pub mod config;
pub mod coordination;
pub mod cross_check;
pub mod demo;
pub mod durations;
pub mod exporter;
pub mod fit;
pub mod grants;
pub mod history;
pub mod inspect;
pub mod limits;
pub mod metrics;
pub mod plan;
pub mod progress;
pub mod report;
pub mod rotation;
pub mod shutdown;
pub mod status;
pub mod store;
pub mod terminal;
pub mod validate;
pub mod vault;
