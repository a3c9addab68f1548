//! What rotor's integration tests (and the bench's) start and share, kept out of the `rotor`
//! library: a real OpenBao server ([`openbao`]: rotor's own dev server, a TLS one, or a
//! file-backed one that survives restarts), a fresh database ([`database`]: SQLite file or
//! PostgreSQL database), a fault-injecting proxy in front of OpenBao ([`fault_proxy`]), and a
//! [`World`] of both with legacy wallets enrolled in it and the `rotor` binary to drive
//! ([`world`], [`output`]).

pub mod database;
pub mod fault_proxy;
pub mod openbao;
pub mod output;
pub mod world;

pub use database::{Kind, TestDb, postgres_admin_url, unique};
pub use openbao::{FileServer, TlsDevServer, Vault};
pub use output::{assert_success, failure, json, text};
pub use world::{World, assert_every_wallet_opens, legacy_wallets, rotor_binary};
