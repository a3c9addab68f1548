//! The baseline for rotor's benchmarks: how fast OpenBao's Transit engine rewraps data keys to a
//! new key version, which is what a user would pick instead of rotor.
//!
//! It drives the HTTP API as a user's script would: sequentially, one batch request in flight,
//! each answer awaited before the next request goes out. The numbers are for that usage, not for
//! the most Transit could do with many concurrent clients.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use reqwest::{Method, StatusCode, header::HeaderValue};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};

/// Generous for one batch on a loaded 2-core machine, yet a hung server fails the run instead of
/// stalling it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What to rewrap: `count` ciphertexts of `plaintext_len` bytes each, `batch` per request.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub count: u64,
    pub batch: usize,
    pub plaintext_len: usize,
}

/// What one Transit measurement took.
#[derive(Debug, Clone, Copy)]
pub struct TransitRun {
    /// How many ciphertexts were rewrapped.
    pub ciphertexts: u64,
    /// Ciphertexts per rewrap request.
    pub batch: usize,
    /// Wall time of the rewrap requests alone; mounting, encrypting and rotating are not in it.
    pub rewrap: Duration,
}

/// Against an OpenBao dev server at `addr` (e.g. `"http://127.0.0.1:8200"`) with token `token`:
/// mounts the transit engine at `mount` if it is not mounted yet, creates key `key`, encrypts
/// `work.count` random plaintexts of `work.plaintext_len` bytes (32: data keys of an envelope
/// scheme; a wallet's size: wallets encrypted by Transit itself), `work.batch` items per
/// request (untimed setup),
/// rotates the key, then times rewrapping every ciphertext to the new key version, `batch` per
/// request.
///
/// Requests are sequential, one batch in flight, as in a user's script. Every rewrapped
/// ciphertext is checked to carry the new version (`vault:v2:` for a new key), so a run that
/// silently rewrapped nothing cannot pass for a fast one.
///
/// OpenBao's default listener refuses JSON with more than 1000 strings, which a batch of 500 or
/// more items exceeds (two strings per item): pass `batch` 499 at most. If `key` already exists it
/// is used as it is, and rotated once more.
///
/// # Errors
/// Any request that fails or is refused, whole or for one item, ends the run; the error names
/// the request (never the token), the item's index across the run, and the server's reason.
pub async fn measure_rewrap(
    client: &reqwest::Client,
    addr: &str,
    token: &str,
    mount: &str,
    key: &str,
    work: Workload,
) -> anyhow::Result<TransitRun> {
    let Workload { count, batch, plaintext_len } = work;
    ensure!(batch > 0, "a Transit batch needs at least one item");
    let bao = Bao::new(client, addr, token)?;
    let mount = mount.trim_matches('/');
    bao.mount_transit(mount).await?;
    bao.call(Method::POST, &format!("{mount}/keys/{key}"), None).await?;

    let encrypt = format!("{mount}/encrypt/{key}");
    let total = usize::try_from(count).context("more ciphertexts than this machine can address")?;
    let mut ciphertexts = Vec::with_capacity(total);
    while ciphertexts.len() < total {
        let n = batch.min(total - ciphertexts.len());
        let plaintexts: Vec<String> = (0..n).map(|_| STANDARD.encode(random_bytes(plaintext_len))).collect();
        let encrypted = bao.batch(&encrypt, "plaintext", &plaintexts, ciphertexts.len()).await?;
        ciphertexts.extend(encrypted);
    }

    let rotate = format!("{mount}/keys/{key}/rotate");
    let rotated: Reply<KeyInfo> = bao.call_json(Method::POST, &rotate, None).await?;
    let new_version = format!("vault:v{}:", rotated.data.latest_version);

    let rewrap = format!("{mount}/rewrap/{key}");
    let start = Instant::now();
    for (i, chunk) in ciphertexts.chunks(batch).enumerate() {
        let first = i * batch;
        let rewrapped = bao.batch(&rewrap, "ciphertext", chunk, first).await?;
        if let Some(j) = rewrapped.iter().position(|c| !c.starts_with(&new_version)) {
            bail!("POST /v1/{rewrap}: item {} was not rewrapped to {new_version}…", first + j);
        }
    }
    Ok(TransitRun { ciphertexts: count, batch, rewrap: start.elapsed() })
}

/// Random bytes, as a stand-in for what a user would encrypt.
fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes
}

/// OpenBao's envelope around an answer's payload.
#[derive(Deserialize)]
struct Reply<T> {
    data: T,
}

/// The part of a key's description that says which version encrypts now.
#[derive(Deserialize)]
struct KeyInfo {
    latest_version: u64,
}

/// One request and what came back, before the status is judged: batch endpoints put the reason
/// for a refusal in the body even with an error status.
struct Answer {
    /// "METHOD /v1/route", to name the request in errors. Holds no secret: the token travels in a
    /// header.
    request: String,
    status: StatusCode,
    body: String,
}

impl Answer {
    /// Fails unless the status is 2xx, with the server's own `errors`.
    fn check(&self) -> anyhow::Result<()> {
        #[derive(Deserialize)]
        struct Errors {
            errors: Vec<String>,
        }
        if self.status.is_success() {
            return Ok(());
        }
        let says = match serde_json::from_str::<Errors>(&self.body) {
            Ok(e) => e.errors.join("; "),
            // Not OpenBao's JSON (a proxy, say): the start of the body is the best clue.
            Err(_) => self.body.chars().take(200).collect(),
        };
        bail!("{}: OpenBao answered HTTP {}: {says}", self.request, self.status)
    }
}

/// One batch item's outcome. Transit marks a refused item with `error` and carries on with the
/// rest.
#[derive(Deserialize)]
struct BatchItem {
    ciphertext: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct BatchResults {
    batch_results: Vec<BatchItem>,
}

/// Talks to one OpenBao server with one token.
struct Bao<'a> {
    client: &'a reqwest::Client,
    addr: &'a str,
    /// Marked sensitive, so that it shows in no `Debug` output.
    token: HeaderValue,
}

impl<'a> Bao<'a> {
    fn new(client: &'a reqwest::Client, addr: &'a str, token: &str) -> anyhow::Result<Self> {
        // The error names no value, so a mistyped token is not printed either.
        let mut token = HeaderValue::from_str(token)
            .ok()
            .context("the OpenBao token holds characters not allowed in an HTTP header")?;
        token.set_sensitive(true);
        Ok(Bao { client, addr: addr.trim_end_matches('/'), token })
    }

    /// Sends `body` (if any) to `/v1/{route}`; fails only if no complete answer came back.
    async fn send(&self, method: Method, route: &str, body: Option<&Value>) -> anyhow::Result<Answer> {
        let request = format!("{method} /v1/{route}");
        let mut builder = self
            .client
            .request(method, format!("{}/v1/{route}", self.addr))
            .header("X-Vault-Token", self.token.clone())
            .timeout(REQUEST_TIMEOUT);
        if let Some(body) = body {
            builder = builder.json(body);
        }
        let response =
            builder.send().await.with_context(|| format!("{request}: no answer from {}", self.addr))?;
        let status = response.status();
        let body = response.text().await.with_context(|| format!("{request}: answer cut short"))?;
        Ok(Answer { request, status, body })
    }

    /// A request that must succeed; returns its answer, whose body may be empty (HTTP 204).
    async fn call(&self, method: Method, route: &str, body: Option<&Value>) -> anyhow::Result<Answer> {
        let answer = self.send(method, route, body).await?;
        answer.check()?;
        Ok(answer)
    }

    /// A request that must succeed with a JSON answer of type `T`.
    async fn call_json<T: DeserializeOwned>(
        &self,
        method: Method,
        route: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<T> {
        let answer = self.call(method, route, body).await?;
        serde_json::from_str(&answer.body).with_context(|| format!("{}: unexpected answer", answer.request))
    }

    /// Mounts the transit engine at `mount` unless it is there already. Anything else mounted
    /// there is an error rather than something to replace: it may hold someone's data.
    async fn mount_transit(&self, mount: &str) -> anyhow::Result<()> {
        #[derive(Deserialize)]
        struct Mount {
            #[serde(rename = "type")]
            kind: String,
        }
        let mounts: Reply<HashMap<String, Mount>> = self.call_json(Method::GET, "sys/mounts", None).await?;
        match mounts.data.get(&format!("{mount}/")) {
            Some(m) if m.kind == "transit" => Ok(()),
            Some(m) => bail!("{mount}/ is mounted already, with a {} engine rather than transit", m.kind),
            None => {
                let body = json!({ "type": "transit" });
                self.call(Method::POST, &format!("sys/mounts/{mount}"), Some(&body)).await.map(drop)
            }
        }
    }

    /// Sends `values` as one `batch_input`, each as `{field: value}`, and returns each item's
    /// ciphertext in order. `first` is the run-wide index of the first item, so that an error
    /// names the item that failed.
    async fn batch(
        &self,
        route: &str,
        field: &str,
        values: &[String],
        first: usize,
    ) -> anyhow::Result<Vec<String>> {
        let items: Vec<Value> = values.iter().map(|v| json!({ field: v })).collect();
        let answer = self.send(Method::POST, route, Some(&json!({ "batch_input": items }))).await?;
        // Item errors come with HTTP 400 (encrypt) or even 200 (rewrap): look for them first, as
        // they say more than the status does.
        let results = serde_json::from_str::<Reply<BatchResults>>(&answer.body).ok();
        let items = results.as_ref().map_or(&[][..], |r| &r.data.batch_results[..]);
        let refused = items
            .iter()
            .enumerate()
            .find_map(|(i, item)| item.error.as_deref().filter(|e| !e.is_empty()).map(|e| (first + i, e)));
        if let Some((i, why)) = refused {
            bail!("{}: item {i} refused: {why}", answer.request);
        }
        answer.check()?;
        let request = &answer.request;
        let results = results.with_context(|| format!("{request}: no batch_results in the answer"))?;
        let results = results.data.batch_results;
        ensure!(
            results.len() == values.len(),
            "{request}: {} results for {} items (from item {first})",
            results.len(),
            values.len()
        );
        let ciphertexts = results.into_iter().enumerate().map(|(i, r)| {
            r.ciphertext.with_context(|| format!("{request}: no ciphertext for item {}", first + i))
        });
        ciphertexts.collect()
    }
}
