//! Mutual TLS: a scheduler and two executors started with `--tls` run a day for a submitter
//! with the client certificate, and refuse everyone else on every port: plaintext HTTP/1.1 and
//! HTTP/2, TLS without a client certificate, a certificate of another CA, an expired one, and a
//! submitter without `--tls`. A plaintext scheduler is refused a non-loopback address.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::common::{Cluster, Sample, free_port, lake_tables, text, ubm, ubm_ok};

const DATE: &str = "2011-12-08";

fn certs(out: &Path) -> PathBuf {
    ubm_ok(&["cluster", "certs", "--out", &out.display().to_string()]);
    out.to_path_buf()
}

/// Every port the cluster's processes listen on.
fn listening_ports(cluster: &Cluster) -> Vec<u16> {
    let mut ports: Vec<u16> = cluster.pids().into_iter().flat_map(ports_of).collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// TCP ports a process listens on (from /proc/net/tcp and its socket inodes).
fn ports_of(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|link| link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default() + &std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // State 0A is LISTEN; field 9 is the socket's inode.
            (fields.len() > 9 && fields[3] == "0A" && inodes.iter().any(|i| i == fields[9]))
                .then(|| u16::from_str_radix(fields[1].rsplit(':').next()?, 16).ok())
                .flatten()
        })
        .collect()
}

/// What a plaintext client reads back after sending `request`.
fn plaintext_answer(port: u16, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream.write_all(request).expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Connects with TLS (ALPN h2) trusting `ca`, presenting `identity` (cert, key) if any, sends
/// the HTTP/2 client preface and returns the first frame header the server sends back: `Err`
/// (a TLS alert) when the server refused.
fn tls_answer(port: u16, ca: &Path, identity: Option<&Path>) -> Result<Vec<u8>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca.join("ca.pem")).expect("ca") {
        roots.add(cert.expect("ca cert")).expect("root");
    }
    let builder =
        rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().expect("versions").with_root_certificates(roots);
    let mut config = match identity {
        Some(dir) => {
            let chain = CertificateDer::pem_file_iter(dir.join("cert.pem")).expect("cert").map(|c| c.expect("cert")).collect();
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(dir.join("key.pem")).expect("key")).expect("identity")
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connection = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").expect("name")).expect("client");
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").map_err(|e| e.to_string())?;
    let mut frame = vec![0u8; 9];
    tls.read_exact(&mut frame).map_err(|e| e.to_string())?;
    Ok(frame)
}

/// A server's HTTP/2 connection preface opens with a SETTINGS frame (type 4).
fn is_http2_settings(frame: &[u8]) -> bool {
    frame.len() == 9 && frame[3] == 4
}

#[test]
fn a_tls_cluster_serves_its_own_and_refuses_everyone_else() {
    let sample = Sample::new("0.01");
    let material = certs(&sample.dir.path().join("tls"));
    let (node, client) = (material.join("node"), material.join("client"));
    let other = certs(&sample.dir.path().join("other-ca"));
    let state = sample.dir.path().join("scheduler-runs").display().to_string();
    let cluster = Cluster::builder(2).tls(node.to_str().expect("utf-8")).scheduler_args(&["--state-dir", &state]).start();

    // The client's day equals the in-process one; in cluster mode too, whose driver reaches the
    // scheduler with the node's material.
    let (local_lake, cluster_lake, driver_lake) = (sample.lake("local"), sample.lake("cluster"), sample.lake("cluster-mode"));
    let data = ["--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--no-report"];
    ubm_ok(&[&["run", "--lake", &local_lake][..], &data].concat());
    let tls = ["--scheduler", &cluster.engine, "--tls", client.to_str().expect("utf-8")];
    ubm_ok(&[&["submit", "--lake", &cluster_lake][..], &tls, &data].concat());
    ubm_ok(&[&["submit", "--deploy-mode", "cluster", "--follow", "--lake", &driver_lake][..], &tls, &data].concat());
    let tables = lake_tables(&local_lake, DATE);
    assert!(tables[2].1.len() > 10, "the metric has rows");
    assert_eq!(tables, lake_tables(&cluster_lake, DATE), "the TLS cluster's tables differ from in-process");
    assert_eq!(tables, lake_tables(&driver_lake, DATE), "the TLS cluster's cluster-mode tables differ from in-process");

    // Every listening port refuses everyone without the cluster's client certificate.
    let ports = listening_ports(&cluster);
    assert_eq!(ports.len(), 3, "a scheduler port and one Flight port per executor, and nothing else: {ports:?}");
    let h2_preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    for port in ports {
        let http1 = plaintext_answer(port, b"GET /api/jobs HTTP/1.1\r\nhost: localhost\r\n\r\n");
        assert!(http1.starts_with("HTTP/1.1 421") && http1.contains("accepts only TLS"), "plaintext HTTP/1.1 on {port}: {http1}");
        let http2 = plaintext_answer(port, h2_preface);
        assert!(!http2.as_bytes().starts_with(&[0, 0]) && http2.contains("accepts only TLS"), "plaintext HTTP/2 on {port}: {http2:?}");
        let anonymous = tls_answer(port, &client, None);
        assert!(anonymous.as_ref().is_err_and(|e| e.contains("CertificateRequired")), "TLS without a client certificate on {port}: {anonymous:?}");
        let foreign = tls_answer(port, &client, Some(&other.join("client")));
        assert!(foreign.as_ref().is_err_and(|e| e.contains("alert")), "a certificate of another CA on {port}: {foreign:?}");
        // The control: with the cluster's own client material the server speaks HTTP/2.
        let own = tls_answer(port, &client, Some(&client));
        assert!(own.as_ref().is_ok_and(|frame| is_http2_settings(frame)), "the cluster's own client on {port}: {own:?}");
    }

    // ubm's own clients say what is wrong, and exit non-zero.
    let expired = sample.dir.path().join("expired");
    let mut request = ubm_cluster::tls::certs::CertsRequest::new(expired.clone(), Vec::new());
    request.existing_ca = Some(material.join("ca"));
    request.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(10);
    request.leaf_days = 2;
    ubm_cluster::tls::certs::make(&request).expect("expired material");
    let scheduler_port: u16 = cluster.engine.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    let refused = tls_answer(scheduler_port, &client, Some(&expired.join("client")));
    assert!(refused.as_ref().is_err_and(|e| e.contains("CertificateExpired")), "an expired certificate: {refused:?}");
    for (tls, says) in [(None, "accepts only TLS"), (Some(other.join("client")), "did not sign"), (Some(expired.join("client")), "expired on")] {
        let mut status = ubm();
        status.args(["status", "--scheduler", &cluster.engine]);
        if let Some(dir) = &tls {
            status.args(["--tls", &dir.display().to_string()]);
        }
        let out = status.output().expect("status runs");
        assert!(!out.status.success() && text(&out.stderr).contains(says), "status with {tls:?}: {}", text(&out.stderr));
    }
    let plain =
        ubm().args([&["submit", "--scheduler", &cluster.engine, "--lake", &sample.lake("plain")][..], &data].concat()).output().expect("submit runs");
    assert!(!plain.status.success() && text(&plain.stderr).contains("TLS"), "submit without --tls: {}", text(&plain.stderr));
}

#[test]
fn a_plaintext_node_is_refused_any_address_but_loopback_unless_insecure() {
    let bind = format!("0.0.0.0:{}", free_port());
    let refused = ubm().args(["cluster", "scheduler", "--bind", &bind]).output().expect("runs");
    assert!(!refused.status.success() && text(&refused.stderr).contains("refusing to listen"), "{}", text(&refused.stderr));
    let port = free_port();
    let executor = ubm().args(["cluster", "executor", "--scheduler", "127.0.0.1:1", "--bind", &format!("0.0.0.0:{port}")]).output().expect("runs");
    let said = text(&executor.stderr);
    assert!(!executor.status.success() && said.contains(&format!("{port} (Flight)")), "{said}");

    let mut insecure = ubm()
        .args(["cluster", "scheduler", "--bind", &bind, "--insecure"])
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    // Its log is read as it comes, until the warning (or the end of the log, or 30 s).
    let stderr = insecure.stderr.take().expect("piped stderr");
    let (lines, said) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    let warned = loop {
        match said.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains("accept plaintext connections from anyone") => break true,
            Ok(line) => log.push_str(&line),
            Err(_) => break false,
        }
    };
    let _ = insecure.kill();
    let _ = insecure.wait();
    assert!(warned, "the scheduler warns that it accepts plaintext connections from anyone: {log}");
}
