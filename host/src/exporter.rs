//! `rotor serve`: a long-running Prometheus exporter. It refreshes the metrics page every
//! `--interval` (journal, wallet counts, KEK age) and validates every wallet every
//! `--validate-every`, and answers `GET /metrics` with the latest page.
//!
//! The HTTP side is a few dozen lines over tokio: one request per connection, GET or HEAD, no
//! request body. That is all a Prometheus scrape needs, so a web framework would add far more
//! code than it saves.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::app::App;
use crate::grants::Access;
use crate::metrics::{Observed, WalletCheck, gather, unix_seconds};
use crate::progress::Reporter;
use crate::shutdown::Shutdown;

/// The text format's content type (version 0.0.4), as Prometheus expects it.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// A scrape's request head is a few hundred bytes; anything far larger is not a scrape.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ExporterOptions {
    pub addr: SocketAddr,
    pub interval: Duration,
    /// How often to open every wallet (the invalid-wallets count); zero: never.
    pub validate_every: Duration,
}

/// Serves until SIGINT or SIGTERM (`shutdown`), which end it successfully: that is how a
/// server is stopped.
pub async fn serve(app: &App, options: &ExporterOptions, shutdown: &Shutdown) -> anyhow::Result<()> {
    anyhow::ensure!(!options.interval.is_zero(), "--interval must be longer than 0s");
    let listener = TcpListener::bind(options.addr).await.with_context(|| {
        format!("cannot listen on {}: choose a free address with --metrics-addr", options.addr)
    })?;
    let page = Arc::new(RwLock::new(String::new()));
    let mut last_check: Option<WalletCheck> = None;
    let mut validated_at: Option<Instant> = None;
    refresh(app, options, &page, &mut last_check, &mut validated_at).await;
    tracing::info!(
        "serving Prometheus metrics at http://{}/metrics, refreshed every {}",
        listener.local_addr()?,
        humantime::format_duration(options.interval)
    );
    let server = tokio::spawn(accept(listener, page.clone()));
    let refreshing = async {
        loop {
            tokio::time::sleep(options.interval).await;
            refresh(app, options, &page, &mut last_check, &mut validated_at).await;
        }
    };
    tokio::select! {
        () = refreshing => {}
        signal = shutdown.wait() => tracing::info!("{signal}: stopping the exporter"),
    }
    server.abort();
    Ok(())
}

/// One refresh: validation when due, then the page. A failure keeps the figures that could be
/// read and marks the refresh with exit code 1.
async fn refresh(
    app: &App,
    options: &ExporterOptions,
    page: &RwLock<String>,
    last_check: &mut Option<WalletCheck>,
    validated_at: &mut Option<Instant>,
) {
    let due = !options.validate_every.is_zero()
        && validated_at.is_none_or(|at| at.elapsed() >= options.validate_every);
    let mut ok = true;
    if due {
        match validate(app).await {
            Ok(check) => *last_check = Some(check),
            Err(e) => {
                tracing::warn!("metrics: validation failed: {e:#}");
                ok = false;
            }
        }
        *validated_at = Some(Instant::now());
    }
    let mut snapshot = gather(app, Observed { check: *last_check, rotation: None }).await;
    ok &= snapshot.journal.is_some() && snapshot.wallets.is_some() && snapshot.kek.is_some();
    snapshot.last_run = Some((if ok { 0 } else { 1 }, unix_seconds(std::time::SystemTime::now())));
    *page.write().unwrap_or_else(PoisonError::into_inner) = snapshot.render();
}

async fn validate(app: &App) -> anyhow::Result<WalletCheck> {
    let mut instance = app.instance(Access::ReadOnly, Reporter::silent()).await?;
    let report = crate::validate::validate(app, &mut instance).await?;
    Ok(WalletCheck::now(report.invalid))
}

async fn accept(listener: TcpListener, page: Arc<RwLock<String>>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let page = page.clone();
                tokio::spawn(async move {
                    if let Err(e) = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &page)).await {
                        tracing::debug!("metrics request timed out: {e}");
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!("metrics: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request head and writes one response, then closes the connection.
async fn answer(mut stream: TcpStream, page: &RwLock<String>) {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
        if head.len() > MAX_REQUEST_HEAD {
            let _ = respond(&mut stream, "431 Request Header Fields Too Large", "text/plain", "", true).await;
            return;
        }
    }
    let request = String::from_utf8_lossy(&head);
    let mut words = request.lines().next().unwrap_or_default().split(' ');
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let path = target.split('?').next().unwrap_or_default();
    let with_body = method != "HEAD";
    let result = match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let body = page.read().unwrap_or_else(PoisonError::into_inner).clone();
            respond(&mut stream, "200 OK", CONTENT_TYPE, &body, with_body).await
        }
        ("GET" | "HEAD", "/") => {
            respond(&mut stream, "200 OK", "text/plain", "rotor exporter: metrics at /metrics\n", with_body)
                .await
        }
        (_, "/metrics" | "/") => {
            respond(&mut stream, "405 Method Not Allowed", "text/plain", "use GET\n", true).await
        }
        _ => {
            respond(&mut stream, "404 Not Found", "text/plain", "not found: try /metrics\n", with_body).await
        }
    };
    if let Err(e) = result {
        tracing::debug!("metrics: writing a response failed: {e}");
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
    with_body: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if with_body {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}
