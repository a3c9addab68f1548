//! How rotor rides out Vault hiccups (an HA fail-over, a restarting node, a load balancer's 502):
//! which failed requests may be sent again, how long to wait between attempts, and how to tell
//! the operator what Vault answered once rotor gives up. The HTTP calls are the transport's.
//!
//! Requests that may be sent twice (reads, lists, metadata, destroy, delete, and check-and-set
//! writes, whose replay [`VaultClient::write`](super::VaultClient::write) recognises) are retried with
//! exponential backoff for `retry-for` (60 s unless configured). Other writes are retried only
//! when Vault surely did not apply them: no connection, or sealed.

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

/// How long requests are retried unless `retry-for` says otherwise: longer than a typical HA
/// fail-over (leader election plus a load balancer's health checks).
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(60);
/// The environment variable that sets `retry-for` (above rotor.toml's `[vault] retry-for`).
pub const RETRY_FOR_VAR: &str = "ROTOR_VAULT_RETRY_FOR";
/// Until Vault has answered once, retries stop after this: at start-up a wrong address, a
/// sealed server or a broken proxy is far likelier than a fail-over, and the operator should
/// hear of it at once rather than after `retry-for`.
pub(super) const FIRST_CONTACT_RETRY_FOR: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How much of an error body an error message quotes.
const EXCERPT_CHARS: usize = 160;

/// Whether a request may be sent again when it is unknown whether Vault applied it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// Sending it twice does no harm (or the caller recognises its own earlier attempt).
    Safe,
    /// Only resent when Vault surely did not apply it: no connection was made, or Vault is sealed.
    IfNotApplied,
}

/// Statuses that usually pass: rate limited, or a server or proxy failing for now.
pub(super) fn is_hiccup(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// Whether an attempt that got `status` (`sealed`: Vault said it is sealed) is worth repeating.
pub(super) fn retry_status(replay: Replay, status: StatusCode, sealed: bool) -> bool {
    match replay {
        Replay::Safe => is_hiccup(status),
        Replay::IfNotApplied => status == StatusCode::SERVICE_UNAVAILABLE && sealed,
    }
}

/// Whether an attempt that got no answer is worth repeating. A refused connection sent nothing;
/// a timeout or a connection lost mid-request may have been applied.
pub(super) fn retry_transport(replay: Replay, error: &reqwest::Error) -> bool {
    error.is_connect() || replay == Replay::Safe
}

/// The attempts one request made: when they started, how many, and the backoff to the next.
#[derive(Debug)]
pub(super) struct Schedule {
    replay: Replay,
    started: Instant,
    window: Duration,
    backoff: Duration,
    attempts: u32,
}

impl Schedule {
    /// A request about to make its first attempt, retried for at most `window`.
    pub(super) fn new(replay: Replay, window: Duration) -> Schedule {
        Schedule { replay, started: Instant::now(), window, backoff: FIRST_BACKOFF, attempts: 1 }
    }

    /// After a failed attempt: how long to wait before the next one, or `None` once the next
    /// attempt would start after the window. Waits double from 100 ms to 5 s, ±20 % so that
    /// many clients do not hit a recovering server in step.
    pub(super) fn next_delay(&mut self) -> Option<Duration> {
        let jitter = 0.8 + 0.4 * f64::from(getrandom::u32().unwrap_or(u32::MAX / 2)) / f64::from(u32::MAX);
        let delay = self.backoff.mul_f64(jitter);
        if self.started.elapsed() + delay > self.window {
            return None;
        }
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.attempts += 1;
        Some(delay)
    }

    /// What was tried so far.
    pub(super) fn tries(&self) -> Tries {
        Tries { attempts: self.attempts, elapsed: self.started.elapsed(), replay: self.replay }
    }
}

/// How many attempts a request made, over how long. Displays as "3 attempts over 2.1 s".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tries {
    /// Attempts made, the first one included.
    pub attempts: u32,
    /// How long the attempts took, from the first one's start.
    pub elapsed: Duration,
    /// Whether the request could have been retried after any failure.
    pub replay: Replay,
}

impl Default for Tries {
    fn default() -> Tries {
        Tries { attempts: 1, elapsed: Duration::ZERO, replay: Replay::Safe }
    }
}

impl fmt::Display for Tries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.attempts, self.replay) {
            (0 | 1, Replay::Safe) => f.write_str("1 attempt"),
            (0 | 1, Replay::IfNotApplied) => {
                f.write_str("1 attempt, not retried since Vault may have applied it")
            }
            (n, _) => write!(f, "{n} attempts over {}", seconds(self.elapsed)),
        }
    }
}

/// A duration in seconds with one decimal below 10 s ("2.1 s", "60 s").
pub(super) fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 10.0 { format!("{secs:.1} s") } else { format!("{:.0} s", secs) }
}

/// Parses a `retry-for` value as humantime reads it ("60s", "2m", "1m 30s"); `what` names where
/// it came from.
pub fn parse_retry_for(what: &str, text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{what} = {text:?} is not a duration ({e}); write it like \"60s\" or \"2m\""))
}

/// What Vault answered, for an error message: its `errors` if the body has them, else the
/// status's reason phrase and a short single-line excerpt of the body (a proxy's HTML page, a
/// bare text) so that "HTTP 502" is never followed by nothing. Only error answers are described,
/// and those carry no secret values.
pub(super) fn describe(status: StatusCode, errors: &[String], body: &[u8]) -> String {
    let errors: Vec<&str> = errors.iter().map(|e| e.trim()).filter(|e| !e.is_empty()).collect();
    if !errors.is_empty() {
        return one_line(&errors.join("; "));
    }
    let reason = status.canonical_reason().unwrap_or("no reason phrase");
    let text = one_line(&String::from_utf8_lossy(body));
    if text.is_empty() {
        format!("{reason}, with an empty body")
    } else {
        format!("{reason}, body: {text:?}")
    }
}

/// Whitespace and control characters collapsed to single spaces, capped at [`EXCERPT_CHARS`]:
/// a server's answer must not break or flood rotor's own output.
fn one_line(text: &str) -> String {
    let words: Vec<&str> =
        text.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty()).collect();
    let joined = words.join(" ");
    match joined.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &joined[..cut]),
        None => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_replayable_requests_retry_what_may_have_been_applied() {
        for status in [429, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(retry_status(Replay::Safe, status, false), "{status}");
            assert!(!retry_status(Replay::IfNotApplied, status, false), "{status}");
        }
        assert!(retry_status(Replay::IfNotApplied, StatusCode::SERVICE_UNAVAILABLE, true));
        for status in [200, 204, 400, 403, 404, 405, 501] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(!retry_status(Replay::Safe, status, false), "{status}");
        }
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_stops_at_the_window() {
        let mut schedule = Schedule::new(Replay::Safe, Duration::from_secs(3600));
        let delays: Vec<Duration> = (0..8).map(|_| schedule.next_delay().unwrap()).collect();
        assert!(
            delays[0] >= Duration::from_millis(80) && delays[0] <= Duration::from_millis(120),
            "{delays:?}"
        );
        assert!(
            delays[1] >= Duration::from_millis(160) && delays[1] <= Duration::from_millis(240),
            "{delays:?}"
        );
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(6)), "{delays:?}");
        assert!(delays[7] >= Duration::from_secs(4), "capped at 5 s ± 20 %: {delays:?}");
        assert_eq!(schedule.tries().attempts, 9);

        let mut none = Schedule::new(Replay::Safe, Duration::ZERO);
        assert_eq!(none.next_delay(), None);
        assert_eq!(none.tries().to_string(), "1 attempt");
        let write = Schedule::new(Replay::IfNotApplied, Duration::ZERO);
        assert_eq!(write.tries().to_string(), "1 attempt, not retried since Vault may have applied it");
    }

    #[test]
    fn answers_without_errors_are_described_on_one_short_line() {
        let bad_gateway = StatusCode::BAD_GATEWAY;
        assert_eq!(describe(bad_gateway, &[], b""), "Bad Gateway, with an empty body");
        let html = b"<html>\r\n<head><title>502 Bad Gateway</title></head>\n<body>nginx</body></html>";
        let described = describe(bad_gateway, &[], html);
        assert_eq!(
            described,
            "Bad Gateway, body: \"<html> <head><title>502 Bad Gateway</title></head> <body>nginx</body></html>\""
        );
        let long = "x".repeat(10_000);
        let described = describe(bad_gateway, &[], long.as_bytes());
        assert!(described.chars().count() < 200 && described.contains('…'), "{described}");
        let errors = vec!["local node not active but active cluster node not found".to_owned()];
        assert_eq!(describe(bad_gateway, &errors, b"{}"), errors[0]);
        assert!(!describe(bad_gateway, &[], b"a\nforged: line").contains('\n'));
    }

    #[test]
    fn retry_for_reads_humantime() {
        assert_eq!(parse_retry_for("retry-for", "60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_retry_for("retry-for", " 2m "), Ok(Duration::from_secs(120)));
        let err = parse_retry_for("ROTOR_VAULT_RETRY_FOR", "soon").unwrap_err();
        assert!(err.contains("ROTOR_VAULT_RETRY_FOR") && err.contains("60s"), "{err}");
    }
}
