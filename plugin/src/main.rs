//! `rotor-plugin`: rotor inside OpenBao, as a secrets-engine plugin.
//!
//! OpenBao launches it from its `plugin_directory` once it is registered by its sha256
//! (`bao plugin register -sha256=… secret rotor-plugin`) and mounted (`bao secrets enable
//! -path=rotor rotor-plugin`). It keeps the mount's KEK versions in the mount's own storage,
//! inside OpenBao's barrier, and seals and opens wallets in rotor's envelope for applications
//! (`rotor/encrypt/<id>`, `rotor/decrypt/<id>`), so that the KEK never leaves the OpenBao
//! process tree. docs/PLUGIN.md is the operator's guide.
//!
//! The layers, from the wire up: [`handshake`], [`mtls`] and [`log`] (go-plugin's launch protocol),
//! [`proto`] (the messages), [`broker`] and [`storage`] (what OpenBao serves back), [`server`]
//! and [`backend`] (the services OpenBao calls), [`request`], [`keyring`] and [`paths`] (the
//! mount's API).
#![deny(unsafe_code)]

mod backend;
mod broker;
mod components;
mod config;
mod handshake;
mod keyring;
mod kv;
mod log;
mod mirror;
mod mtls;
mod paths;
mod proto;
mod request;
mod runner;
mod server;
mod storage;
mod timestamp;

use std::process::ExitCode;

fn main() -> ExitCode {
    // stderr is OpenBao's log of the plugin; stdout carries only the handshake.
    tracing_subscriber::fmt()
        .event_format(log::HclogJson)
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ROTOR_PLUGIN_LOG").unwrap_or_else(|_| "info".into()),
        )
        .init();
    let launch = match handshake::Launch::from_env() {
        Ok(launch) => launch,
        Err(error) => {
            eprintln!("rotor-plugin: {error:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rotor-plugin: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::serve(launch)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
