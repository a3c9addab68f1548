//! Prometheus metrics against real OpenBao and SQLite: `--metrics-file` after each kind of
//! command (figures from the journal and the database, so any command writes a complete page)
//! and `rotor serve` answering real HTTP GETs while it refreshes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rotor_testkit::{Kind, World, assert_success, failure, json_success};

/// The samples of a text-format page: `name{labels}` → value, without the labels every sample
/// carries (the KEK's path and the table; checked here). Also checks the format: every sample
/// follows the `# TYPE` line of its family.
fn samples(page: &str) -> BTreeMap<String, f64> {
    let mut family = None;
    let mut samples = BTreeMap::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split(' ');
            family = words.next().map(str::to_owned);
            assert!(matches!(words.next(), Some("counter" | "gauge")), "{line}");
        } else if !line.starts_with('#') {
            let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
            let (name, labels) = key.split_once('{').unwrap_or_else(|| panic!("no labels: {line}"));
            assert_eq!(Some(name), family.as_deref(), "sample outside its family: {line}");
            let labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
            for scope in [r#"key_path="secret/ibn/encryption-key""#, r#"table="wallets""#] {
                assert!(labels.contains(&scope), "{scope} missing: {line}");
            }
            let own: Vec<&str> = labels
                .into_iter()
                .filter(|l| !l.starts_with("key_path=") && !l.starts_with("table="))
                .collect();
            let key = if own.is_empty() { name.to_owned() } else { format!("{name}{{{}}}", own.join(",")) };
            samples.insert(key, value.parse().unwrap_or_else(|_| panic!("not a number: {line}")));
        }
    }
    samples
}

fn read_metrics(path: &Path) -> BTreeMap<String, f64> {
    samples(&std::fs::read_to_string(path).unwrap())
}

fn metric(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples.get(key).unwrap_or_else(|| panic!("no {key} in {samples:#?}"))
}

/// Every command that writes metrics writes a complete page, figures from the journal and the
/// database; a failed command keeps the last figures and records its exit code.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_file_after_each_command() {
    let (world, kek) = World::with_kek(Kind::Sqlite).await;
    world.enroll_legacy(&kek, 20).await;
    let dir = world.scratch.join("textfile");
    std::fs::create_dir_all(&dir).unwrap();
    let prom = dir.join("rotor.prom");
    let with_metrics = |command: &[&str]| {
        let mut rotor = world.rotor();
        rotor.args(command).arg("--metrics-file").arg(&prom);
        rotor
    };

    let _ = json_success(&mut with_metrics(&["validate"]));
    let m = read_metrics(&prom);
    assert_eq!(metric(&m, "rotor_rotations_total"), 0.0);
    assert_eq!(metric(&m, r#"rotor_wallets{key_version="legacy"}"#), 20.0);
    assert_eq!(metric(&m, "rotor_invalid_wallets"), 0.0);
    assert_eq!(metric(&m, "rotor_kek_version"), 1.0);
    assert!(metric(&m, "rotor_kek_age_seconds") < 120.0, "{m:#?}");
    assert_eq!(metric(&m, "rotor_last_run_exit_code"), 0.0);
    assert!(!m.contains_key("rotor_last_rotation_timestamp_seconds"), "no rotation yet: {m:#?}");

    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let report = json_success(&mut with_metrics(&["rotate"]));
    let m = read_metrics(&prom);
    assert_eq!(metric(&m, "rotor_rotations_total"), 1.0);
    assert_eq!(metric(&m, "rotor_rotations_failed_total"), 0.0);
    assert_eq!(metric(&m, "rotor_rotation_in_progress"), 0.0);
    assert_eq!(metric(&m, r#"rotor_wallets{key_version="2"}"#), 20.0);
    assert!(!m.contains_key(r#"rotor_wallets{key_version="legacy"}"#), "{m:#?}");
    assert_eq!(metric(&m, "rotor_kek_version"), 2.0);
    assert!(metric(&m, "rotor_last_rotation_timestamp_seconds") >= before.floor() - 1.0, "{m:#?}");
    let duration = metric(&m, "rotor_last_rotation_duration_seconds");
    assert!(
        (duration - report["duration_ms"].as_f64().unwrap() / 1000.0).abs() < 0.002,
        "{duration} vs {report}"
    );

    // A wallet that does not open: validate counts it (exit 3), status carries the count over,
    // the next rotation leaves it behind and counts as a failed rotation.
    world.db.connect().await.put("broken@IBNMSP", "rotor:v2:not-an-envelope").await.unwrap();
    let out = with_metrics(&["validate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let m = read_metrics(&prom);
    assert_eq!((metric(&m, "rotor_invalid_wallets"), metric(&m, "rotor_last_run_exit_code")), (1.0, 3.0));
    let checked_at = metric(&m, "rotor_last_check_timestamp_seconds");
    let out = with_metrics(&["status"]).output().unwrap();
    assert_success(&out);
    let m = read_metrics(&prom);
    assert_eq!(metric(&m, "rotor_invalid_wallets"), 1.0, "carried over");
    assert_eq!(metric(&m, "rotor_last_check_timestamp_seconds"), checked_at);
    let out = with_metrics(&["rotate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let m = read_metrics(&prom);
    assert_eq!(metric(&m, "rotor_rotations_total"), 2.0);
    assert_eq!(metric(&m, "rotor_rotations_failed_total"), 1.0);
    assert_eq!(metric(&m, r#"rotor_wallets{key_version="3"}"#), 20.0);

    // Vault down: the command fails, the page keeps its figures and says exit 1.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = with_metrics(&["rotate"]).env("VAULT_ADDR", format!("http://{closed}")).output().unwrap();
    assert_eq!(failure(&out).0, 1);
    let failed = read_metrics(&prom);
    assert_eq!(metric(&failed, "rotor_last_run_exit_code"), 1.0);
    assert_eq!(metric(&failed, "rotor_rotations_total"), 2.0);
    assert_eq!(metric(&failed, r#"rotor_wallets{key_version="3"}"#), 20.0);

    // A fresh file from `status` alone has the journal's totals, not this process's.
    let fresh = dir.join("fresh.prom");
    let out = world.rotor().arg("status").arg("--metrics-file").arg(&fresh).output().unwrap();
    assert_success(&out);
    let m = read_metrics(&fresh);
    assert_eq!((metric(&m, "rotor_rotations_total"), metric(&m, "rotor_rotations_failed_total")), (2.0, 1.0));
    assert!(!m.contains_key("rotor_invalid_wallets"), "no check was made for this file: {m:#?}");

    // Written by rename: no temporary file is left for the collector to read.
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["fresh.prom", "rotor.prom"]);
}

/// GET /metrics over real HTTP, `status` and `path` of the request line.
async fn get(addr: &str, path: &str) -> reqwest::Result<(u16, String, String)> {
    let response = reqwest::Client::new().get(format!("http://{addr}{path}")).send().await?;
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    Ok((status, content_type, response.text().await?))
}

/// Sends `request` as written and returns everything the server answers before it closes.
async fn raw_request(addr: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection after its answer")
        .unwrap();
    String::from_utf8(answer).unwrap()
}

struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `rotor serve` answers GET /metrics, refreshes on its interval (a rotation made by another
/// rotor shows up), answers HEAD, refuses other paths and methods, and stops cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread")]
async fn serve_exports_and_refreshes() {
    let (world, kek) = World::with_kek(Kind::Sqlite).await;
    world.enroll_legacy(&kek, 15).await;
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let mut exporter = Exporter(
        world
            .rotor()
            .args(["serve", "--metrics-addr", &addr, "--interval", "1s", "--validate-every", "2s"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, content_type, page) = loop {
        match get(&addr, "/metrics").await {
            Ok(answer) => break answer,
            Err(e) => {
                assert!(exporter.0.try_wait().unwrap().is_none(), "rotor serve exited");
                assert!(Instant::now() < deadline, "no answer on {addr}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let m = samples(&page);
    assert_eq!(metric(&m, r#"rotor_wallets{key_version="legacy"}"#), 15.0, "{page}");
    assert_eq!(metric(&m, "rotor_invalid_wallets"), 0.0, "validated at start: {page}");
    assert_eq!(metric(&m, "rotor_rotations_total"), 0.0);
    assert_eq!(metric(&m, "rotor_last_run_exit_code"), 0.0);

    let _ = json_success(world.rotor().arg("rotate"));
    world.db.connect().await.put("broken@IBNMSP", "rotor:v2:garbage").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, _, page) = get(&addr, "/metrics").await.unwrap();
        let m = samples(&page);
        let refreshed = m.get("rotor_rotations_total") == Some(&1.0)
            && m.get(r#"rotor_wallets{key_version="2"}"#) == Some(&16.0)
            && m.get("rotor_invalid_wallets") == Some(&1.0);
        if refreshed {
            break;
        }
        assert!(Instant::now() < deadline, "the exporter did not refresh:\n{page}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    assert_eq!(get(&addr, "/nope").await.unwrap().0, 404);
    let post = reqwest::Client::new().post(format!("http://{addr}/metrics")).send().await.unwrap();
    assert_eq!(post.status().as_u16(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    let (status, _, body) = get(&addr, "/").await.unwrap();
    assert_eq!((status, body.as_str()), (200, "rotor exporter: metrics at /metrics\n"));
    // HEAD: GET's status and headers, no body. Read off the wire, since a client library would
    // hide a body sent by mistake; one request per connection, as before.
    let head = raw_request(&addr, "HEAD /metrics HTTP/1.1\r\nHost: rotor\r\n\r\n").await;
    let (head_lines, body) = head.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head end: {head:?}"));
    let head_lines = head_lines.to_ascii_lowercase();
    assert!(head_lines.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head_lines.contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n"), "{head}");
    assert!(head_lines.contains("connection: close"), "{head}");
    let length: usize = head_lines
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap_or_else(|| panic!("no content-length: {head}"))
        .trim()
        .parse()
        .unwrap();
    assert!(length > 100, "the page's length: {head}");
    assert_eq!(body, "", "HEAD has no body");

    // A client that connected and said nothing does not hold the stop up: the exporter stops
    // accepting and closes the connections that carry no request.
    let _idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid = exporter.0.id().to_string();
    let stopping = Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = exporter.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "rotor serve did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    assert!(stopping.elapsed() < Duration::from_secs(5), "stopped in {:?}", stopping.elapsed());
}
