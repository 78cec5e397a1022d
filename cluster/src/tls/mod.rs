//! Mutual TLS for a ubm cluster: every port speaks TLS only and lets in only peers whose
//! certificate the cluster's CA signed; every client presents its own and checks the server's.
//!
//! A TLS directory holds `ca.pem` (the cluster's CA certificate), `cert.pem` and `key.pem` (this
//! machine's certificate and key, mode 0600). `ubm cluster certs` makes them; PEM files made
//! elsewhere work too. Servers use [`TlsListener`] (one accept loop for the scheduler's
//! gRPC + REST port and for an executor's Flight port); clients use
//! [`ClusterTls::endpoint_override`] (Ballista's gRPC and Flight clients) and
//! [`ClusterTls::http_client`] (the scheduler's REST API).

pub mod certs;

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ballista_core::extension::EndpointOverrideFn;
use ballista_core::utils::{GrpcClientConfig, create_grpc_client_endpoint};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{AlertDescription, CertificateError, RootCertStore};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::ClusterError;

/// The files of a TLS directory.
pub const CA_FILE: &str = "ca.pem";
pub const CERT_FILE: &str = "cert.pem";
pub const KEY_FILE: &str = "key.pem";

/// How long a peer may take to finish its TLS handshake before the connection is dropped, so
/// that a silent client cannot hold an accept slot.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a plaintext client reads before its connection is closed.
pub const PLAINTEXT_REFUSAL: &str = "this ubm cluster port accepts only TLS with a client certificate signed by the \
cluster's CA: pass --tls DIR (or set UBM_TLS_DIR) with the material `ubm cluster certs` made";

/// The header of that answer, by which ubm's own clients tell it from other HTTP errors.
pub const TLS_REQUIRED_HEADER: &str = "x-ubm-tls";

/// One machine's TLS material, loaded and checked: the cluster's CA, this machine's certificate
/// (signed by that CA, valid now) and its key (readable by its owner only). Parsed once; the PEM
/// text is kept for tonic, which takes PEM.
pub struct ClusterTls {
    dir: PathBuf,
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl ClusterTls {
    /// Loads `dir/{ca,cert,key}.pem`; refuses, saying what to do, a missing or unparsable file,
    /// a key others can read, a certificate that is expired, not yet valid or not signed by
    /// `ca.pem`.
    pub fn load(dir: &Path) -> Result<Arc<ClusterTls>, ClusterError> {
        let error = |reason: String| ClusterError::Tls { dir: dir.display().to_string(), reason };
        let file = |name: &str| dir.join(name).display().to_string();
        let (ca_pem, cert_pem, key_pem) = (read(dir, CA_FILE)?, read(dir, CERT_FILE)?, read(dir, KEY_FILE)?);
        check_key_is_private(&dir.join(KEY_FILE)).map_err(error)?;
        let mut roots = RootCertStore::empty();
        for ca in certificates(&ca_pem).map_err(|reason| error(format!("{}: {reason}", file(CA_FILE))))? {
            roots.add(ca).map_err(|e| error(format!("{}: not a usable CA certificate ({e})", file(CA_FILE))))?;
        }
        let chain = certificates(&cert_pem).map_err(|reason| error(format!("{}: {reason}", file(CERT_FILE))))?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| error(format!("{}: not a PEM private key ({e})", file(KEY_FILE))))?;
        let tls = ClusterTls { dir: dir.to_path_buf(), ca_pem, cert_pem, key_pem, roots: Arc::new(roots), chain, key };
        tls.check_certificate()?;
        Ok(Arc::new(tls))
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn error(&self, reason: String) -> ClusterError {
        ClusterError::Tls { dir: self.dir.display().to_string(), reason }
    }

    fn not_a_pair(&self, e: rustls::Error) -> ClusterError {
        self.error(format!("{} and {} do not make a key pair ({e})", self.file(CERT_FILE), self.file(KEY_FILE)))
    }

    fn client_verifier(&self) -> Result<Arc<dyn ClientCertVerifier>, ClusterError> {
        WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(|e| self.error(format!("{}: cannot verify clients with it ({e})", self.file(CA_FILE))))
    }

    /// This machine's certificate must pass the check its peers will make: signed by the CA,
    /// valid now, usable by a client (a node's certificate is also a server's).
    fn check_certificate(&self) -> Result<(), ClusterError> {
        let (leaf, intermediates) = self.chain.split_first().ok_or_else(|| self.error(format!("{} holds no certificate", self.file(CERT_FILE))))?;
        let verdict = self.client_verifier()?.verify_client_cert(leaf, intermediates, UnixTime::now());
        let Err(error) = verdict else { return Ok(()) };
        let cert = self.file(CERT_FILE);
        let (not_before, not_after) = validity(leaf);
        Err(self.error(match error {
            rustls::Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => format!(
                "{cert} expired on {not_after}; make new material with `ubm cluster certs --ca CA_DIR --out NEW_DIR` (CA_DIR is the `ca` folder the first run made)"
            ),
            rustls::Error::InvalidCertificate(CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }) => {
                format!("{cert} is not valid before {not_before}; is this machine's clock right?")
            }
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => format!(
                "{cert} is not signed by the CA in {}; the three files must come from one `ubm cluster certs` run (or one CA)",
                self.file(CA_FILE)
            ),
            other => format!("{cert} cannot be used: {other}"),
        }))
    }

    /// The server side: this machine's certificate, and a client certificate signed by the
    /// cluster's CA required of every peer. HTTP/2 (gRPC) and HTTP/1.1 (the REST API).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, ClusterError> {
        self.check_server_usage()?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| self.error(e.to_string()))?
            .with_client_cert_verifier(self.client_verifier()?)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| self.not_a_pair(e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// A server's certificate must allow server authentication, or every client refuses it at
    /// its first connection; client material given to a scheduler or executor is refused here.
    fn check_server_usage(&self) -> Result<(), ClusterError> {
        let Some(leaf) = self.chain.first() else { return Ok(()) };
        let Ok((_, parsed)) = x509_parser::parse_x509_certificate(leaf) else { return Ok(()) };
        match parsed.extended_key_usage() {
            Ok(Some(usage)) if !usage.value.server_auth && !usage.value.any => Err(self.error(format!(
                "{} is not a server's certificate (no serverAuth usage): a scheduler or executor needs node material (DIR/node of `ubm cluster certs`)",
                self.file(CERT_FILE)
            ))),
            _ => Ok(()),
        }
    }

    /// The client side for Ballista's gRPC and Flight clients: whatever endpoint Ballista made
    /// (`http://host:port` for the scheduler and executors' control ports), it connects with TLS,
    /// presents this machine's certificate and checks the server's against the cluster's CA
    /// and the host name.
    pub fn endpoint_override(&self) -> EndpointOverrideFn {
        let tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem)).identity(Identity::from_pem(&self.cert_pem, &self.key_pem));
        Arc::new(move |endpoint: Endpoint| -> Result<Endpoint, Box<dyn std::error::Error + Send + Sync>> {
            // Ballista builds some endpoints with its `use_tls` setting (https, and its window
            // sizes kept) and some with `http://` fixed in its code; those are made again.
            let endpoint = if endpoint.uri().scheme_str() == Some("https") {
                endpoint
            } else {
                let authority = endpoint.uri().authority().map(|a| a.to_string()).ok_or("an endpoint without host:port")?;
                create_grpc_client_endpoint(format!("https://{authority}"), Some(&GrpcClientConfig::default()))?
            };
            Ok(endpoint.tls_config(tls.clone())?)
        })
    }

    /// An HTTP client for the scheduler's REST API that presents this machine's certificate and
    /// trusts only the cluster's CA.
    pub fn http_client(&self, builder: reqwest::ClientBuilder) -> Result<reqwest::Client, ClusterError> {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| self.error(e.to_string()))?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| self.not_a_pair(e))?;
        builder.use_preconfigured_tls(config).build().map_err(|source| ClusterError::HttpClient { source })
    }

    /// Says in words why a TLS connection to `server` failed, and what to do, when `error`'s
    /// causes hold a TLS error; `None` otherwise.
    pub fn explain(&self, server: &str, error: &(dyn std::error::Error + 'static)) -> Option<String> {
        let tls_error = causes(error).find_map(tls_error_in)?;
        let (ca, cert) = (self.file(CA_FILE), self.file(CERT_FILE));
        Some(match tls_error {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => {
                format!("{server} presented a certificate that the CA in {ca} did not sign: is {} the material of this cluster?", self.dir.display())
            }
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }) => {
                format!("{server}'s certificate does not name the host used to reach it; make node material whose --hosts include it")
            }
            rustls::Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
                format!("{server}'s certificate has expired; give the cluster new node material (`ubm cluster certs --ca CA_DIR`)")
            }
            rustls::Error::AlertReceived(AlertDescription::UnknownCA | AlertDescription::BadCertificate | AlertDescription::DecryptError) => {
                format!(
                    "{server} refused this machine's certificate {cert}: the cluster's CA did not sign it; pass --tls with this cluster's client material"
                )
            }
            rustls::Error::AlertReceived(AlertDescription::CertificateExpired) => {
                format!(
                    "{server} refused this machine's certificate {cert}: it has expired; make new client material with `ubm cluster certs --ca CA_DIR`"
                )
            }
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
                format!("{server} requires a client certificate; pass --tls with this cluster's client material")
            }
            other => format!("TLS with {server} failed: {other}"),
        })
    }
}

impl fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out of logs and panics.
        f.debug_struct("ClusterTls").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl PartialEq for ClusterTls {
    fn eq(&self, other: &Self) -> bool {
        self.dir == other.dir && self.ca_pem == other.ca_pem && self.cert_pem == other.cert_pem
    }
}

impl Eq for ClusterTls {}

impl Hash for ClusterTls {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.dir.hash(state);
    }
}

/// Refuses a plaintext node on a non-loopback address unless `insecure` says it is meant (then
/// warns); `ports` names what would be open.
pub fn check_exposure(bind: SocketAddr, tls: bool, insecure: bool, ports: &str) -> Result<(), ClusterError> {
    if tls || bind.ip().is_loopback() {
        return Ok(());
    }
    if !insecure {
        return Err(ClusterError::BadLocation {
            location: bind.to_string(),
            reason: format!(
                "refusing to listen here without TLS: {ports} would accept anyone who can reach them. Pass --tls DIR \
                 (`ubm cluster certs` makes the material), or --insecure if the network itself keeps strangers out"
            ),
        });
    }
    tracing::warn!("--insecure: {ports} accept plaintext connections from anyone who can reach {}", bind.ip());
    Ok(())
}

/// The one crypto provider ubm's TLS uses (the build holds two, so none is the default).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A private key must be its owner's only.
fn check_key_is_private(path: &Path) -> Result<(), String> {
    let mode = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} can be read by others (mode {:o}); a private key must be its owner's only: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        ));
    }
    Ok(())
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, ClusterError> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|e| ClusterError::Tls {
        dir: dir.display().to_string(),
        reason: format!(
            "{}: {e}; a TLS directory holds {CA_FILE}, {CERT_FILE} and {KEY_FILE} (`ubm cluster certs --out DIR` makes DIR/node and DIR/client)",
            path.display()
        ),
    })
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| format!("not PEM certificates ({e})"))?;
    if certs.is_empty() {
        return Err("holds no certificate".to_string());
    }
    Ok(certs)
}

/// A certificate's not-before and not-after, for messages.
fn validity(cert: &CertificateDer<'_>) -> (String, String) {
    match x509_parser::parse_x509_certificate(cert) {
        Ok((_, parsed)) => (parsed.validity().not_before.to_string(), parsed.validity().not_after.to_string()),
        Err(_) => ("(unreadable)".to_string(), "(unreadable)".to_string()),
    }
}

/// The TLS error `cause` is or wraps. An `io::Error` hides the error it wraps from `source()`
/// (it returns that error's own source), and the HTTP client nests two of them, so they are
/// opened by hand.
fn tls_error_in<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = cause;
    loop {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let inner: &'a (dyn std::error::Error + Send + Sync + 'static) = current.downcast_ref::<std::io::Error>()?.get_ref()?;
        current = inner;
    }
}

fn causes<'a>(error: &'a (dyn std::error::Error + 'static)) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| e.source())
}

/// A listening socket that hands out only connections that finished a TLS handshake with a
/// client certificate the cluster's CA signed. Handshakes run beside the accept loop, so a slow
/// or silent client holds up no one; refusals are logged with the peer's address.
pub struct TlsListener {
    connections: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Binds `address`; `port` names the port in logs ("scheduler", "executor flight").
    pub async fn bind(address: SocketAddr, config: Arc<rustls::ServerConfig>, port: &'static str) -> std::io::Result<TlsListener> {
        let listener = TcpListener::bind(address).await?;
        let local = listener.local_addr()?;
        let (sender, connections) = mpsc::channel(64);
        tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), sender, port));
        Ok(TlsListener { connections, local })
    }

    /// The next connection that passed its handshake; never returns once the accept loop ends.
    pub async fn next(&mut self) -> Option<(TlsStream<TcpStream>, SocketAddr)> {
        self.connections.recv().await
    }

    /// The connections as a stream, for tonic's `serve_with_incoming`.
    pub fn into_stream(self) -> impl futures::Stream<Item = std::io::Result<TlsStream<TcpStream>>> {
        futures::stream::unfold(self, |mut listener| async move { listener.next().await.map(|(stream, _)| (Ok(stream), listener)) })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.next().await {
            Some(connection) => connection,
            // The accept loop only ends with the runtime; wait for that.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, sender: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>, port: &'static str) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!("{port}: accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // As Ballista's own servers do: small gRPC frames go out at once, not after Nagle's
        // delay (which, with the peer's delayed ACKs, stalls each exchange by tens of ms).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("{port}: TCP_NODELAY for {peer}: {e}");
        }
        let (acceptor, sender) = (acceptor.clone(), sender.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(stream, &acceptor)).await {
                Ok(Ok(Some(tls))) => {
                    let _ = sender.send((tls, peer)).await;
                }
                // A port probe (connect, then close): nothing to refuse.
                Ok(Ok(None)) => tracing::debug!("{port}: {peer} connected and closed without a word"),
                Ok(Err(refusal)) => tracing::warn!("{port}: refused a connection from {peer}: {refusal}"),
                Err(_) => tracing::warn!("{port}: refused a connection from {peer}: no TLS handshake within {HANDSHAKE_TIMEOUT:?}"),
            }
        });
    }
}

/// A TLS record starts with 0x16 (handshake). Anything else is a plaintext client: an HTTP one
/// is told in its own words that the port needs TLS, then the connection is closed.
async fn handshake(mut stream: TcpStream, acceptor: &TlsAcceptor) -> Result<Option<TlsStream<TcpStream>>, String> {
    let mut first = [0u8; 1];
    let read = stream.peek(&mut first).await.map_err(|e| e.to_string())?;
    if read == 0 {
        return Ok(None);
    }
    if first[0] != 0x16 {
        let answer = format!(
            "HTTP/1.1 421 Misdirected Request\r\ncontent-type: text/plain\r\n{TLS_REQUIRED_HEADER}: required\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{PLAINTEXT_REFUSAL}\n",
            PLAINTEXT_REFUSAL.len() + 1
        );
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
        return Err("it spoke plaintext, not TLS".to_string());
    }
    acceptor.accept(stream).await.map(Some).map_err(|e| format!("TLS handshake failed: {e}"))
}
