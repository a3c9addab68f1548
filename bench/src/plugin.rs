//! The bench's OpenBao: a dev server with a plugin directory, running `rotor-plugin` (the one
//! cargo built next to `rotor`) registered by its sha256, so that a rotation through the plugin
//! is measured on the same rows as the CLI's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::Method;
use rotor::demo::openbao::DevServer;
use rotor_codec::Kek;
use serde_json::{Value, json};
use sha2::Digest as _;

/// How often the bench reads `rotor/status` while the plugin rotates (cheap while a rotation
/// runs: no count of the rows); the wall time it logs is late by at most this.
const POLL: Duration = Duration::from_millis(100);

/// The longest a rotation through the plugin may take before the bench gives up.
const PATIENCE: Duration = Duration::from_secs(3600);

/// A `bao server -dev` whose plugin directory holds `rotor-plugin`, registered. Dropping it
/// kills the server and with it the plugin.
pub struct OpenBao {
    server: DevServer,
    http: reqwest::Client,
}

/// What a rotation through the plugin did, as its `rotor/status` reports it.
pub struct PluginRotation {
    /// Wallets moved.
    pub rotated: u64,
    /// Wallets that did not move.
    pub failed: u64,
    /// The rotation's own time, measured inside the plugin as `rotor rotate` measures its own.
    pub took: Duration,
    /// From the request that started it to the status that showed it finished.
    pub wall: Duration,
    /// The plugin process's peak RSS.
    pub peak_rss_bytes: Option<u64>,
}

/// The `rotor-plugin` binary next to `rotor`, as cargo builds them.
pub fn plugin_binary(rotor: &Path) -> anyhow::Result<PathBuf> {
    let plugin = rotor.with_file_name("rotor-plugin");
    if !plugin.is_file() {
        bail!(
            "the bench measures rotations through rotor-plugin, and there is none next to {}: build it \
             with `cargo build --release -p rotor-plugin` (`cargo build --release --workspace` builds all)",
            rotor.display()
        );
    }
    Ok(plugin)
}

impl OpenBao {
    /// Starts the server, copies `plugin` into its plugin directory and registers it by its
    /// sha256 as the secrets engine `rotor-plugin`.
    pub async fn start(plugin: &Path) -> anyhow::Result<OpenBao> {
        let server = OpenBao { server: DevServer::start_with_plugins().await?, http: reqwest::Client::new() };
        let installed = server.server.plugin_dir().join("rotor-plugin");
        std::fs::copy(plugin, &installed).with_context(|| format!("copying {}", plugin.display()))?;
        let sha256 = hex::encode(sha2::Sha256::digest(std::fs::read(&installed)?));
        let registration = json!({"sha256": sha256, "command": "rotor-plugin"});
        server
            .call(Method::POST, "sys/plugins/catalog/secret/rotor-plugin", registration)
            .await
            .context("registering rotor-plugin")?;
        Ok(server)
    }

    /// Base URL, e.g. `http://127.0.0.1:43117`.
    pub fn addr(&self) -> &str {
        self.server.addr()
    }

    /// The root token.
    pub fn root_token(&self) -> &str {
        self.server.root_token()
    }

    /// Kills the server and waits for it to exit.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.server.stop().await
    }

    /// One call as root; its `data`, or an error with what OpenBao said.
    async fn call(&self, method: Method, path: &str, body: Value) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}/v1/{path}", self.addr()))
            .header("X-Vault-Token", self.root_token());
        if method != Method::GET {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("{method} {path}: OpenBao answered {status}: {text}");
        }
        Ok(if text.is_empty() { Value::Null } else { serde_json::from_str::<Value>(&text)?["data"].take() })
    }

    /// Mounts the plugin at `mount`, gives it `kek` as version `version` (the rows' current
    /// KEK, from the CLI's Vault KV) and the database, and times one rotation of its rows.
    pub async fn rotate(
        &self,
        mount: &str,
        database_url: &str,
        (version, kek): (u32, &Kek),
        workers: usize,
        batch_size: u32,
    ) -> anyhow::Result<PluginRotation> {
        self.call(Method::POST, &format!("sys/mounts/{mount}"), json!({"type": "rotor-plugin"})).await?;
        let import = json!({"key": kek.to_hex().as_str(), "version": version});
        self.call(Method::POST, &format!("{mount}/keys/import"), import).await?;
        let config = json!({"database_url": database_url, "workers": workers, "batch_size": batch_size});
        self.call(Method::POST, &format!("{mount}/config"), config).await?;
        let started = Instant::now();
        self.call(Method::POST, &format!("{mount}/rotate"), json!({})).await?;
        let last_run = loop {
            let status = self.call(Method::GET, &format!("{mount}/status"), Value::Null).await?;
            if status["last_run"]["state"] != "running" {
                break status["last_run"].clone();
            }
            if started.elapsed() > PATIENCE {
                bail!("the rotation through the plugin at {mount}/ still runs after {PATIENCE:?}");
            }
            tokio::time::sleep(POLL).await;
        };
        let wall = started.elapsed();
        if last_run["state"] != "finished" {
            bail!("the rotation through the plugin at {mount}/ did not finish: {last_run}");
        }
        let report = &last_run["report"];
        let number = |field: &str| report[field].as_u64().with_context(|| format!("no {field} in {report}"));
        Ok(PluginRotation {
            rotated: number("rotated")?,
            failed: number("failed")?,
            took: Duration::from_millis(number("duration_ms")?.max(1)),
            wall,
            peak_rss_bytes: report["peak_rss_bytes"].as_u64(),
        })
    }
}
