//! Retries decided by the error's cause: an S3 outage that outlasts the object-store client's
//! own retries is retried by the task and the run succeeds; a refused permission fails at once.
//!
//! S3 is moto, behind a proxy of this test's own on loopback that answers `503 Slow Down` for a
//! while, or `403 Access Denied` for one key. The client's own retries are made short
//! (`UBM_STORE_MAX_RETRIES`, `UBM_STORE_RETRY_TIMEOUT_SECONDS`) so that the outage outlasts them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Moto, Sample, text, ubm};

const DATE: &str = "2011-12-31";

/// What the proxy does to a request.
#[derive(Clone)]
enum Fault {
    /// `503 Slow Down` to every request whose path starts with `prefix`, for `window` after the
    /// first such request.
    OutageFor { prefix: String, window: Duration },
    /// `403 Access Denied` to every request whose path starts with this.
    DenyPath(String),
}

/// An HTTP proxy to moto that injects [`Fault`]s, one request per connection so that every
/// request is seen. Stops when dropped.
struct FaultyProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    /// Requests answered with a fault.
    faults: Arc<AtomicU64>,
}

impl FaultyProxy {
    fn start(upstream: &str, fault: Fault) -> FaultyProxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (stop, faults) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (stop_flag, fault_count) = (Arc::clone(&stop), Arc::clone(&faults));
        std::thread::spawn(move || {
            let first_request: Arc<std::sync::OnceLock<Instant>> = Arc::default();
            for client in listener.incoming() {
                if stop_flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let (upstream, fault, first, count) = (upstream.clone(), fault.clone(), Arc::clone(&first_request), Arc::clone(&fault_count));
                std::thread::spawn(move || {
                    let _ = serve(client, &upstream, &fault, &first, &count);
                });
            }
        });
        FaultyProxy { port, stop, faults }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wakes the accept loop
    }
}

/// One request: read it whole, then either answer with the fault or forward it with
/// `Connection: close` and copy the answer back.
fn serve(client: TcpStream, upstream: &str, fault: &Fault, first: &std::sync::OnceLock<Instant>, faults: &AtomicU64) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => content_length = value.trim().parse().unwrap_or(0),
                "connection" => continue,
                _ => {}
            }
        }
        if line == "\r\n" {
            head.extend_from_slice(b"Connection: close\r\n\r\n");
            break;
        }
        head.extend_from_slice(line.as_bytes());
    }
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body)?;
    let path = String::from_utf8_lossy(&head).split_whitespace().nth(1).unwrap_or("/").to_string();
    let answer = match fault {
        Fault::OutageFor { prefix, window } if path.starts_with(prefix.as_str()) && first.get_or_init(Instant::now).elapsed() < *window => {
            Some(("503 Slow Down", "SlowDown", "Please reduce your request rate."))
        }
        Fault::DenyPath(prefix) if path.starts_with(prefix.as_str()) => Some(("403 Forbidden", "AccessDenied", "Access Denied")),
        _ => None,
    };
    let mut client = client;
    if let Some((status, code, message)) = answer {
        faults.fetch_add(1, Ordering::SeqCst);
        let xml = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>");
        write!(client, "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}", xml.len())?;
        return client.flush();
    }
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(&head)?;
    server.write_all(&body)?;
    std::io::copy(&mut server, &mut client)?;
    Ok(())
}

/// `ubm run` with reviews and lake on S3 through `proxy`, the object-store client retrying
/// one request at most 1 time and for at most 0.3 s.
fn run_through(proxy: &FaultyProxy, sample: &Sample, attempts: &str) -> std::process::Output {
    ubm()
        .args([
            "run",
            "--date",
            DATE,
            "--reviews",
            "s3://vendor/movie_review.csv",
            "--oltp",
            &sample.sqlite(),
            "--lake",
            "s3://lake/ubm",
            "--attempts",
            attempts,
            "--retry-backoff-ms",
            "300",
        ])
        .envs(Moto::env_for(&proxy.endpoint()))
        .env("UBM_STORE_MAX_RETRIES", "1")
        .env("UBM_STORE_RETRY_TIMEOUT_SECONDS", "0.3")
        .output()
        .expect("ubm runs")
}

fn s3_report(moto: &Moto) -> serde_json::Value {
    let json = moto.boto3(&format!("print(s3.get_object(Bucket='lake', Key='ubm/_runs/{DATE}.json')['Body'].read().decode())"));
    serde_json::from_str(&json).expect("the run report is JSON")
}

fn task<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["tasks"].as_array().expect("tasks").iter().find(|t| t["name"] == name).expect("task")
}

fn moto_with_reviews(sample: &Sample) -> Option<Moto> {
    let moto = Moto::start()?;
    moto.boto3(&format!(
        "s3.create_bucket(Bucket='vendor')\ns3.create_bucket(Bucket='lake')\ns3.upload_file('{}', 'vendor', 'movie_review.csv')",
        sample.reviews()
    ));
    Some(moto)
}

#[test]
fn a_store_outage_longer_than_the_clients_retries_is_retried_by_the_task() {
    let sample = Sample::new("0.01");
    let Some(moto) = moto_with_reviews(&sample) else { return };
    let proxy = FaultyProxy::start(&moto.endpoint, Fault::OutageFor { prefix: "/vendor/".to_string(), window: Duration::from_secs(2) });
    let output = run_through(&proxy, &sample, "6");
    assert!(output.status.success(), "the run recovers once S3 does:\n{}\n{}", text(&output.stdout), text(&output.stderr));
    assert!(proxy.faults.load(Ordering::SeqCst) >= 4, "the outage was seen, the client's retries included");

    let report = s3_report(&moto);
    assert_eq!(report["status"], "succeeded");
    let ingest = task(&report, "ingest");
    assert!(ingest["attempts"].as_u64().is_some_and(|n| n > 1), "ingest was retried by the task: {ingest}");
    // Nothing lost on the way: the same counts as a run on local files.
    let local = crate::common::ubm_ok(&[
        "run",
        "--date",
        DATE,
        "--reviews",
        &sample.reviews(),
        "--oltp",
        &sample.sqlite(),
        "--lake",
        &sample.lake("local"),
        "--json",
    ]);
    let local: serde_json::Value = serde_json::from_slice(&local.stdout).expect("json");
    assert_eq!(report["counts"], local[0]["counts"]);
}

#[test]
fn a_refused_permission_fails_at_once_with_a_clear_message() {
    let sample = Sample::new("0.01");
    let Some(moto) = moto_with_reviews(&sample) else { return };
    let proxy = FaultyProxy::start(&moto.endpoint, Fault::DenyPath("/vendor/".to_string()));
    let clock = Instant::now();
    let output = run_through(&proxy, &sample, "6");
    assert!(!output.status.success(), "a refused permission fails the run");
    let report = s3_report(&moto);
    let ingest = task(&report, "ingest");
    assert_eq!(ingest["attempts"], 1, "a refused permission is not retried: {ingest}");
    let error = ingest["error"].as_str().expect("error");
    assert!(error.contains("s3://vendor/movie_review.csv") && error.contains("privileges"), "names the file and why: {error}");
    assert!(text(&output.stdout).contains("s3://vendor/movie_review.csv"), "{}", text(&output.stdout));
    assert_eq!(task(&report, "extract")["status"], "succeeded", "the other side of the run is unaffected");
    // Five retries with backoff would take 0.3 + 0.6 + 1.2 + 2.4 + 4.8 s.
    assert!(clock.elapsed() < Duration::from_secs(8), "failed at once, not after retries: {:?}", clock.elapsed());
}
