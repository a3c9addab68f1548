//! `rotor serve`: a long-running Prometheus exporter. It refreshes the metrics page every
//! `--interval` (journal, wallet counts, KEK age) and validates every wallet every
//! `--validate-every`, and answers `GET /metrics` with the latest page.
//!
//! The HTTP side is hyper's HTTP/1.1 server (with hyper-util's tokio glue and graceful
//! shutdown), which reqwest already brings into the build: parsing requests, HEAD, oversized
//! heads and connection handling are hyper's, well-tested against real clients, rather than
//! ours. The routing is four cases, so a framework on top (axum) would add a router and a
//! tower stack for nothing. Each connection carries one request (`Connection: close`, as
//! before) and has [`REQUEST_TIMEOUT`] to complete, so a slow or silent client cannot hold one
//! open; on SIGTERM or SIGINT the exporter stops accepting and lets the scrapes in flight
//! finish.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::app::App;
use crate::grants::Access;
use crate::metrics::{Observed, WalletCheck, gather, unix_seconds};
use crate::progress::Reporter;
use crate::shutdown::Shutdown;

/// A scrape's request head is a few hundred bytes; hyper answers 431 to anything larger (8 KiB
/// is also the smallest read buffer hyper accepts).
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long one connection (its request and our answer) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What `rotor serve` was asked to do.
pub struct ExporterOptions {
    /// Where to listen (`--metrics-addr`).
    pub addr: SocketAddr,
    /// How often to refresh the page (`--interval`).
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
    let page = Arc::new(RwLock::new(Bytes::new()));
    let mut last_check: Option<WalletCheck> = None;
    let mut validated_at: Option<Instant> = None;
    refresh(app, options, &page, &mut last_check, &mut validated_at).await;
    tracing::info!(
        "serving Prometheus metrics at http://{}/metrics, refreshed every {}",
        listener.local_addr()?,
        humantime::format_duration(options.interval)
    );
    let connections = GracefulShutdown::new();
    let refreshing = async {
        loop {
            tokio::time::sleep(options.interval).await;
            refresh(app, options, &page, &mut last_check, &mut validated_at).await;
        }
    };
    tokio::select! {
        () = refreshing => {}
        () = accept(listener, &page, &connections) => {}
        signal = shutdown.wait() => tracing::info!("{signal}: stopping the exporter"),
    }
    // The listener is closed now. Each connection has at most REQUEST_TIMEOUT left, which bounds
    // this wait; an idle one closes at once.
    connections.shutdown().await;
    Ok(())
}

/// One refresh: validation when due, then the page. A failure keeps the figures that could be
/// read and marks the refresh with exit code 1.
async fn refresh(
    app: &App,
    options: &ExporterOptions,
    page: &RwLock<Bytes>,
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
    *page.write().unwrap_or_else(PoisonError::into_inner) = Bytes::from(snapshot.render());
}

async fn validate(app: &App) -> anyhow::Result<WalletCheck> {
    let mut instance = app.instance(Access::ReadOnly, Reporter::silent()).await?;
    let report = crate::validate::validate(app, &mut instance).await?;
    Ok(WalletCheck::now(report.invalid))
}

/// Accepts connections until dropped, each served on its own task.
async fn accept(listener: TcpListener, page: &Arc<RwLock<Bytes>>, connections: &GracefulShutdown) {
    let mut http = http1::Builder::new();
    http.keep_alive(false)
        .max_buf_size(MAX_REQUEST_HEAD)
        // REQUEST_TIMEOUT below bounds the whole exchange, the request head included.
        .header_read_timeout(None);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!("metrics: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let page = page.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let response = answer(request.method(), request.uri().path(), &page);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = connections.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!("metrics: a connection failed: {e}"),
                Err(e) => tracing::debug!("metrics request timed out: {e}"),
            }
        });
    }
}

/// The answer to one request: the page at `/metrics` (GET or HEAD: hyper sends HEAD's headers
/// without the body), a pointer to it at `/`, 405 for other methods there, 404 elsewhere.
fn answer(method: &Method, path: &str, page: &RwLock<Bytes>) -> Response<Full<Bytes>> {
    let readable = matches!(*method, Method::GET | Method::HEAD);
    let (status, content_type, body) = match path {
        "/metrics" if readable => (
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            page.read().unwrap_or_else(PoisonError::into_inner).clone(),
        ),
        "/" if readable => {
            (StatusCode::OK, "text/plain", Bytes::from_static(b"rotor exporter: metrics at /metrics\n"))
        }
        "/metrics" | "/" => (StatusCode::METHOD_NOT_ALLOWED, "text/plain", Bytes::from_static(b"use GET\n")),
        _ => (StatusCode::NOT_FOUND, "text/plain", Bytes::from_static(b"not found: try /metrics\n")),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        // HTTP requires a 405 to say what is allowed.
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    /// Status, Content-Type, Allow and body of the answer to `method path`.
    async fn call(method: Method, path: &str) -> (StatusCode, Option<String>, Option<String>, Bytes) {
        let page = RwLock::new(Bytes::from_static(b"rotor_kek_version 4\n"));
        let (head, body) = answer(&method, path, &page).into_parts();
        let header = |name| head.headers.get(name).map(|v: &HeaderValue| v.to_str().unwrap().to_owned());
        let body = body.collect().await.unwrap().to_bytes();
        (head.status, header(CONTENT_TYPE), header(ALLOW), body)
    }

    #[tokio::test]
    async fn answers_scrapes_and_refuses_the_rest() {
        let (status, content_type, _, body) = call(Method::GET, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some("text/plain; version=0.0.4; charset=utf-8"));
        assert_eq!(body, "rotor_kek_version 4\n");
        // HEAD gets GET's headers (hyper leaves the body out on the wire).
        assert_eq!(call(Method::HEAD, "/metrics").await.0, StatusCode::OK);
        assert_eq!(call(Method::GET, "/").await.3, "rotor exporter: metrics at /metrics\n");

        for (method, path) in [(Method::POST, "/metrics"), (Method::PUT, "/"), (Method::DELETE, "/metrics")] {
            let (status, _, allow, body) = call(method, path).await;
            assert_eq!(
                (status, allow.as_deref(), &body[..]),
                (StatusCode::METHOD_NOT_ALLOWED, Some("GET, HEAD"), &b"use GET\n"[..])
            );
        }
        for (method, path) in [(Method::GET, "/nope"), (Method::HEAD, "/metrics/"), (Method::POST, "/x")] {
            let (status, content_type, allow, _) = call(method, path).await;
            assert_eq!(
                (status, content_type.as_deref(), allow),
                (StatusCode::NOT_FOUND, Some("text/plain"), None)
            );
        }
    }
}
