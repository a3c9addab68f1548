//! A fault-injecting HTTP/1.1 proxy in front of a real OpenBao: point rotor's `VAULT_ADDR` at
//! [`FaultProxy::addr`] and it forwards every request to the server, except those a rule picks,
//! which it fails, fails after forwarding, or holds. Vault's API itself is never imitated: what
//! is not failed is the real server's answer.
//!
//! ```ignore
//! let proxy = FaultProxy::start(world.vault.addr());
//! // The next 2 writes of the KEK (not of its archive: `$` ends the path) get a bare 502.
//! let rule = proxy.fail(Method::POST, "secret/data/ibn/encryption-key$", 502, Times::Next(2));
//! let out = world.rotor().env("VAULT_ADDR", proxy.addr()).arg("rotate").output().unwrap();
//! assert_eq!(proxy.hits(rule), 2);
//! ```
//!
//! Rules match a request by method and by a substring of its path (without the query); a
//! `path_part` ending in `$` must end the path. The first rule still active that matches acts.
//! Plain `http://` servers only. The proxy runs on a thread and runtime of its own, so a test may
//! block on `Command::output` while it serves; it stops when dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HOST, HeaderValue, TRANSFER_ENCODING};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// How long a rule stays active.
#[derive(Clone, Copy, Debug)]
pub enum Times {
    /// For the next `n` matching requests.
    Next(usize),
    /// For this long from when the rule is added.
    For(Duration),
    /// Until [`FaultProxy::clear`].
    Always,
}

/// Names a rule, to ask how often it acted ([`FaultProxy::hits`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleId(usize);

#[derive(Clone, Debug)]
enum Action {
    /// Answer this, without forwarding.
    Answer { status: StatusCode, body: Bytes },
    /// Forward (Vault applies the request), then answer this instead of Vault's answer.
    ForwardThenAnswer { status: StatusCode },
    /// Wait, then forward.
    Hold(Duration),
}

struct Rule {
    method: Method,
    path_part: String,
    action: Action,
    remaining: Option<usize>,
    until: Option<Instant>,
    cleared: bool,
    hits: usize,
}

impl Rule {
    fn active(&self, now: Instant) -> bool {
        !self.cleared && self.remaining != Some(0) && self.until.is_none_or(|until| now < until)
    }
}

/// Whether `path` holds `part` (or ends with it, when `part` ends in `$`).
fn path_matches(path: &str, part: &str) -> bool {
    match part.strip_suffix('$') {
        Some(end) => path.ends_with(end),
        None => path.contains(part),
    }
}

#[derive(Default)]
struct Shared {
    rules: Vec<Rule>,
    /// Every request seen: method and path.
    seen: Vec<(Method, String)>,
}

/// The proxy; see the module's documentation.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts forwarding a free port on 127.0.0.1 to `vault_addr` (`http://host:port`).
    pub fn start(vault_addr: &str) -> FaultProxy {
        let upstream = vault_addr
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("the fault proxy forwards to plain http:// servers, not {vault_addr}"))
            .trim_end_matches('/')
            .to_owned();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = shared.clone();
        let thread = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                tokio::select! {
                    _ = stopped => {}
                    () = serve(listener, upstream, state) => {}
                }
            });
            runtime.shutdown_background();
        });
        FaultProxy { addr, shared, stop: Some(stop), thread: Some(thread) }
    }

    /// The proxy's address, as `VAULT_ADDR` takes it (`http://127.0.0.1:PORT`).
    pub fn addr(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers `status` with an empty body to matching requests, without forwarding them.
    pub fn fail(&self, method: Method, path_part: &str, status: u16, times: Times) -> RuleId {
        self.fail_with_body(method, path_part, status, "", times)
    }

    /// Answers `status` with `body` (as a load balancer's error page would) to matching
    /// requests, without forwarding them.
    pub fn fail_with_body(
        &self,
        method: Method,
        path_part: &str,
        status: u16,
        body: &str,
        times: Times,
    ) -> RuleId {
        let action = Action::Answer { status: status_code(status), body: Bytes::from(body.to_owned()) };
        self.add(method, path_part, action, times)
    }

    /// Forwards matching requests, so that Vault applies them, then answers `status` (empty
    /// body) instead of Vault's answer: a success reported as a failure.
    pub fn apply_then_fail(&self, method: Method, path_part: &str, status: u16, times: Times) -> RuleId {
        self.add(method, path_part, Action::ForwardThenAnswer { status: status_code(status) }, times)
    }

    /// Holds matching requests for `delay`, then forwards them.
    pub fn hold(&self, method: Method, path_part: &str, delay: Duration, times: Times) -> RuleId {
        self.add(method, path_part, Action::Hold(delay), times)
    }

    /// Ends every rule: from now on everything is forwarded. Hit counts stay readable.
    pub fn clear(&self) {
        for rule in &mut self.lock().rules {
            rule.cleared = true;
        }
    }

    /// How many requests `rule` acted on.
    pub fn hits(&self, rule: RuleId) -> usize {
        self.lock().rules[rule.0].hits
    }

    /// How many requests with `method` and a path matching `path_part` the proxy has seen
    /// (whatever rules did with them).
    pub fn seen(&self, method: Method, path_part: &str) -> usize {
        self.lock().seen.iter().filter(|(m, path)| *m == method && path_matches(path, path_part)).count()
    }

    fn add(&self, method: Method, path_part: &str, action: Action, times: Times) -> RuleId {
        let (remaining, until) = match times {
            Times::Next(n) => (Some(n), None),
            Times::For(duration) => (None, Some(Instant::now() + duration)),
            Times::Always => (None, None),
        };
        let mut shared = self.lock();
        shared.rules.push(Rule {
            method,
            path_part: path_part.to_owned(),
            action,
            remaining,
            until,
            cleared: false,
            hits: 0,
        });
        RuleId(shared.rules.len() - 1)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or_else(|_| panic!("{status} is not an HTTP status"))
}

async fn serve(listener: tokio::net::TcpListener, upstream: String, shared: Arc<Mutex<Shared>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (upstream, shared) = (upstream.clone(), shared.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let (upstream, shared) = (upstream.clone(), shared.clone());
                async move { Ok::<_, Infallible>(handle(request, &upstream, &shared).await) }
            });
            // A client that hangs up mid-request is no failure of the proxy's.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Applies the first active rule that matches, or forwards.
async fn handle(request: Request<Incoming>, upstream: &str, shared: &Mutex<Shared>) -> Response<Full<Bytes>> {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let action = {
        let mut shared = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        shared.seen.push((method.clone(), path.clone()));
        let now = Instant::now();
        shared
            .rules
            .iter_mut()
            .find(|rule| rule.active(now) && rule.method == method && path_matches(&path, &rule.path_part))
            .map(|rule| {
                rule.hits += 1;
                if let Some(remaining) = &mut rule.remaining {
                    *remaining -= 1;
                }
                rule.action.clone()
            })
    };
    match action {
        Some(Action::Answer { status, body }) => answer(status, body),
        Some(Action::ForwardThenAnswer { status }) => {
            let _ = forward(request, upstream).await;
            answer(status, Bytes::new())
        }
        Some(Action::Hold(delay)) => {
            tokio::time::sleep(delay).await;
            forward_or_502(request, upstream).await
        }
        None => forward_or_502(request, upstream).await,
    }
}

fn answer(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
}

async fn forward_or_502(request: Request<Incoming>, upstream: &str) -> Response<Full<Bytes>> {
    match forward(request, upstream).await {
        Ok(response) => response,
        Err(e) => answer(StatusCode::BAD_GATEWAY, Bytes::from(format!("fault proxy: upstream failed: {e}"))),
    }
}

/// Sends the request to the server on a connection of its own, and reads the whole answer.
async fn forward(request: Request<Incoming>, upstream: &str) -> Result<Response<Full<Bytes>>, String> {
    let (mut parts, body) = request.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    parts.headers.insert(HOST, HeaderValue::from_str(upstream).map_err(|e| e.to_string())?);
    parts.headers.remove(CONNECTION);
    let stream = tokio::net::TcpStream::connect(upstream).await.map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let response =
        sender.send_request(Request::from_parts(parts, Full::new(body))).await.map_err(|e| e.to_string())?;
    let (mut parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    // The body is passed on whole: hyper sets its length.
    parts.headers.remove(TRANSFER_ENCODING);
    parts.headers.remove(CONNECTION);
    Ok(Response::from_parts(parts, Full::new(body)))
}
