//! The OpenBao servers tests start besides rotor's own dev server ([`DevServer`]): a dev server
//! speaking HTTPS with a CA of its own, a dev server with a plugin folder, and a file-backed
//! server (with a plugin folder too) that keeps its data across a crash and comes back sealed.
//! All run on rotor's [`BaoProcess`].

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::StatusCode;
use rotor::demo::openbao::{BaoProcess, DEV_ROOT_TOKEN, DevServer, dev_server_args};

/// What a test needs to know of an OpenBao server to point rotor at it.
pub trait Vault {
    /// Base URL, e.g. `http://127.0.0.1:43117`.
    fn addr(&self) -> &str;
    /// A token allowed everything.
    fn root_token(&self) -> &str;

    /// Runs the `bao` CLI against this server with the root token, as an operator would.
    fn bao(&self, args: &[&str]) -> std::process::Output {
        let bao = rotor::demo::openbao::find_bao().expect("the bao binary");
        std::process::Command::new(bao)
            .args(args)
            .env("BAO_ADDR", self.addr())
            .env("BAO_TOKEN", self.root_token())
            .output()
            .expect("running bao")
    }
}

impl Vault for DevServer {
    fn addr(&self) -> &str {
        DevServer::addr(self)
    }

    fn root_token(&self) -> &str {
        DevServer::root_token(self)
    }
}

/// A dev server that speaks HTTPS with a certificate from a CA of its own (`-dev-tls`): see
/// [`TlsDevServer::ca_cert`]. For tests of `VAULT_CACERT` and `VAULT_SKIP_VERIFY`. Dropping it
/// kills the server.
pub struct TlsDevServer {
    process: BaoProcess,
    addr: String,
}

impl TlsDevServer {
    /// Starts the server on a free loopback port and waits until it reports healthy; on failure
    /// the error includes the end of its log.
    pub async fn start() -> anyhow::Result<TlsDevServer> {
        let process = BaoProcess::start("rotor-bao", |port, dir| {
            // bao writes its CA, certificate and key there, but does not create the folder.
            fs::create_dir_all(dir.join("tls"))?;
            let mut args = dev_server_args(port);
            args.push("-dev-tls".to_owned());
            args.push(format!("-dev-tls-cert-dir={}", dir.join("tls").display()));
            Ok(args)
        })?;
        let addr = format!("https://127.0.0.1:{}", process.port());
        let mut server = TlsDevServer { process, addr };
        if let Err(e) = server.process.wait_for_health(&server.addr, |status| status == StatusCode::OK).await
        {
            return Err(server.process.failure("OpenBao dev server", &e));
        }
        Ok(server)
    }

    /// The CA certificate (PEM) the server's certificate is signed with.
    pub fn ca_cert(&self) -> PathBuf {
        self.process.dir().join("tls").join("vault-ca.pem")
    }
}

impl Vault for TlsDevServer {
    fn addr(&self) -> &str {
        &self.addr
    }

    fn root_token(&self) -> &str {
        DEV_ROOT_TOKEN
    }
}

/// A dev server that runs external plugins from a folder of its own ([`PluginDevServer::plugin_dir`]),
/// named by `plugin_directory` in a configuration file beside `-dev`: rotor's
/// [`DevServer::start_with_plugins`]. Dropping it kills the server (and with it, the plugins it
/// launched).
pub struct PluginDevServer(DevServer);

impl PluginDevServer {
    /// Starts the server on a free loopback port and waits until it reports healthy; on failure
    /// the error includes the end of its log.
    pub async fn start() -> anyhow::Result<PluginDevServer> {
        DevServer::start_with_plugins().await.map(PluginDevServer)
    }

    /// The folder OpenBao runs registered plugins from.
    pub fn plugin_dir(&self) -> PathBuf {
        self.0.plugin_dir()
    }

    /// The server's log so far (the plugins' stderr goes there too).
    pub fn log(&self) -> String {
        self.0.log()
    }
}

impl Vault for PluginDevServer {
    fn addr(&self) -> &str {
        self.0.addr()
    }

    fn root_token(&self) -> &str {
        self.0.root_token()
    }
}

/// A `bao server` with persistent storage in a folder of its own, initialised with a single
/// unseal key and KV v2 at `secret/`. Unlike a dev server it keeps its data when killed and
/// restarted, and comes back sealed, as a production server does. Dropping it kills the server
/// and removes the folder.
pub struct FileServer {
    process: BaoProcess,
    addr: String,
    root_token: String,
    unseal_key: String,
}

impl FileServer {
    /// Starts a server on a free loopback port (and port+1 for clustering), initialises and
    /// unseals it and mounts KV v2 at `secret/`; on failure the error includes the end of its log.
    pub async fn start() -> anyhow::Result<FileServer> {
        let process = BaoProcess::start("rotor-bao-file", write_file_config)?;
        let addr = format!("http://127.0.0.1:{}", process.port());
        let mut server = FileServer { process, addr, root_token: String::new(), unseal_key: String::new() };
        if let Err(e) = server.initialise().await {
            return Err(server.process.failure("OpenBao server", &e));
        }
        Ok(server)
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it to exit. A no-op if it
    /// is not running.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.process.kill().await
    }

    /// Kills the server if it runs and starts it again on the same port with the same data. It
    /// comes back sealed: see [`FileServer::unseal`].
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.process.restart().await?;
        // Sealed, it answers 503; any answer means it is listening.
        if let Err(e) = self.process.wait_for_health(&self.addr, |_| true).await {
            return Err(self.process.failure("restarted OpenBao server", &e));
        }
        Ok(())
    }

    /// The folder the server runs registered plugins from (`plugin_directory`).
    pub fn plugin_dir(&self) -> PathBuf {
        self.process.dir().join("plugins")
    }

    /// Unseals the server with its key and waits until it serves requests as the active node.
    pub async fn unseal(&mut self) -> anyhow::Result<()> {
        let key = self.unseal_key.clone();
        let state = self.call(reqwest::Method::PUT, "sys/unseal", serde_json::json!({ "key": key })).await?;
        if state["sealed"] != false {
            bail!("still sealed after unsealing: {state}");
        }
        // Right after unsealing it is a standby (429) until it has taken over as active.
        self.process.wait_for_health(&self.addr, |status| status == StatusCode::OK).await
    }

    async fn initialise(&mut self) -> anyhow::Result<()> {
        // Not initialised yet, it answers 501; any answer means it is listening.
        self.process.wait_for_health(&self.addr, |_| true).await?;
        let init = serde_json::json!({ "secret_shares": 1, "secret_threshold": 1 });
        let keys = self.call(reqwest::Method::PUT, "sys/init", init).await?;
        let (Some(token), Some(key)) = (keys["root_token"].as_str(), keys["keys_base64"][0].as_str()) else {
            bail!("sys/init answered without a root token and an unseal key");
        };
        (self.root_token, self.unseal_key) = (token.to_owned(), key.to_owned());
        self.unseal().await?;
        let kv2 = serde_json::json!({ "type": "kv", "options": { "version": "2" } });
        self.call(reqwest::Method::POST, "sys/mounts/secret", kv2).await?;
        Ok(())
    }

    /// One request to the server's API as root; the JSON it answers (`null` if empty).
    async fn call(
        &self,
        method: reqwest::Method,
        route: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        // Initialisation generates keys and sets up storage: it takes seconds.
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
        let mut request = http.request(method.clone(), format!("{}/v1/{route}", self.addr)).json(&body);
        if !self.root_token.is_empty() {
            request = request.header("X-Vault-Token", &self.root_token);
        }
        let response = request.send().await.with_context(|| format!("{method} /v1/{route}"))?;
        let status = response.status();
        let text = response.text().await.with_context(|| format!("{method} /v1/{route}"))?;
        if !status.is_success() {
            bail!("{method} /v1/{route} answered {status}: {text}");
        }
        if text.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("{method} /v1/{route} answered no JSON"))
    }
}

impl Vault for FileServer {
    fn addr(&self) -> &str {
        &self.addr
    }

    /// The root token that initialisation returned.
    fn root_token(&self) -> &str {
        &self.root_token
    }
}

/// Writes the configuration of a server with storage in `dir/data` on `port`; returns the
/// arguments that start it. OpenBao 2.x has no `file` storage backend any more: its integrated
/// (Raft) storage, a single node here, persists to files as well.
fn write_file_config(port: u16, dir: &Path) -> anyhow::Result<Vec<String>> {
    let data = dir.join("data");
    fs::create_dir_all(&data)?;
    let plugins = dir.join("plugins");
    fs::create_dir_all(&plugins)?;
    let cluster = port + 1;
    let config = format!(
        r#"storage "raft" {{
  path    = {data:?}
  node_id = "rotor-test"
}}
listener "tcp" {{
  address         = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster}"
  tls_disable     = true
}}
api_addr     = "http://127.0.0.1:{port}"
cluster_addr = "http://127.0.0.1:{cluster}"
plugin_directory = {plugins:?}
"#
    );
    let path = dir.join("config.hcl");
    fs::write(&path, config)?;
    Ok(vec!["server".to_owned(), format!("-config={}", path.display())])
}
