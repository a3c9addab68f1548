//! What rotor's integration tests (and the bench's) start and share, kept out of the `rotor`
//! library: a real OpenBao server ([`openbao`]: rotor's own dev server, a TLS one, or a
//! file-backed one that survives restarts), a fresh database ([`database`]: SQLite file or
//! PostgreSQL database), components built from source ([`components`]), a fault-injecting proxy in front of OpenBao ([`fault_proxy`]), and a
//! [`World`] of both with legacy wallets enrolled in it and the `rotor` binary to drive
//! ([`world`], [`output`]).

pub mod components;
pub mod database;
pub mod fault_proxy;
pub mod openbao;
pub mod output;
pub mod world;

pub use components::build_components;
pub use database::{Kind, TestDb, new_rotation, postgres_admin_url, unique};
pub use openbao::{FileServer, PluginDevServer, TlsDevServer, Vault};
pub use output::{
    assert_fails_saying, assert_ran, assert_says, assert_success, failure, json, json_success, text,
};
pub use world::{Wallets, World, assert_every_wallet_opens, legacy_wallets, rotor_binary};

/// Runs each scenario `async fn NAME(kind: Kind)` as two tests, `NAME::sqlite` and
/// `NAME::postgres` (`cargo test NAME` runs both).
#[macro_export]
macro_rules! on_sqlite_and_postgres {
    ($($scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                super::$scenario($crate::Kind::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                super::$scenario($crate::Kind::Postgres).await;
            }
        }
    )+};
}
