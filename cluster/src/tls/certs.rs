//! `ubm cluster certs`: a cluster's own CA and the key pairs it signs.
//!
//! ```text
//! OUT/ca/{cert,key}.pem          the CA; its key signs more material later (--ca). Keep it off the cluster.
//! OUT/node/{ca,cert,key}.pem     scheduler and executors (server and client of each other)
//! OUT/client/{ca,cert,key}.pem   submitters: ubm submit, status, cancel, run --engine df://…
//! ```
//! Keys are ECDSA P-256, written mode 0600. Lifetimes: the CA 5 years, the key pairs 397 days
//! (the longest the public web allows a server certificate), both settable.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};

use crate::ClusterError;
use crate::tls::{CA_FILE, CERT_FILE, KEY_FILE};

/// Default lifetime of the CA, in days.
pub const CA_DAYS: u32 = 5 * 365;
/// Default lifetime of the node and client key pairs, in days.
pub const LEAF_DAYS: u32 = 397;

/// Hosts every node certificate names besides the ones asked for, so that a cluster on one
/// machine (`ubm cluster local`, tests) works with any material.
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// What to make.
#[derive(Debug, Clone)]
pub struct CertsRequest {
    pub out: PathBuf,
    /// Names and addresses the scheduler and executors are reached at; `*.ec2.internal` style
    /// wildcards allowed.
    pub hosts: Vec<String>,
    /// Sign with this existing CA (a `ca` folder of an earlier run) instead of making one.
    pub existing_ca: Option<PathBuf>,
    pub ca_days: u32,
    pub leaf_days: u32,
    /// When the key pairs start being valid (now, unless a test wants expired ones).
    pub not_before: OffsetDateTime,
}

impl CertsRequest {
    pub fn new(out: PathBuf, hosts: Vec<String>) -> CertsRequest {
        CertsRequest { out, hosts, existing_ca: None, ca_days: CA_DAYS, leaf_days: LEAF_DAYS, not_before: OffsetDateTime::now_utc() }
    }
}

/// The folders made.
#[derive(Debug, Clone)]
pub struct CertsMade {
    pub ca: PathBuf,
    pub node: PathBuf,
    pub client: PathBuf,
    pub node_hosts: Vec<String>,
    pub leaf_not_after: OffsetDateTime,
}

impl std::fmt::Display for CertsMade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (node, client) = (self.node.display(), self.client.display());
        writeln!(f, "CA:      {} (its key signs more material with --ca; keep it off the cluster)", self.ca.display())?;
        writeln!(f, "node:    {node} (scheduler and executors: --tls {node})")?;
        writeln!(f, "         names {}", self.node_hosts.join(", "))?;
        writeln!(f, "client:  {client} (ubm submit, status, cancel, run --engine df://…: --tls {client})")?;
        writeln!(f, "valid until {} (node and client)", self.leaf_not_after.date())
    }
}

/// Makes (or reuses) the CA and signs a node and a client key pair. Writes into a staging folder
/// under `out` and renames it into place, so a run that is killed leaves nothing half made
/// where a cluster would look; refuses to overwrite existing material.
pub fn make(request: &CertsRequest) -> Result<CertsMade, ClusterError> {
    let bad = |reason: String| ClusterError::Tls { dir: request.out.display().to_string(), reason };
    if request.leaf_days == 0 || request.ca_days == 0 {
        return Err(bad("lifetimes are at least one day".to_string()));
    }
    let (node, client) = (request.out.join("node"), request.out.join("client"));
    let ca_dir = request.existing_ca.clone().unwrap_or_else(|| request.out.join("ca"));
    let mut targets = vec![node.clone(), client.clone()];
    if request.existing_ca.is_none() {
        targets.push(ca_dir.clone());
    }
    if let Some(existing) = targets.iter().find(|t| t.exists()) {
        return Err(bad(format!("{} exists already; remove it or choose another --out (material is never overwritten)", existing.display())));
    }
    fs::create_dir_all(&request.out).map_err(|e| bad(format!("cannot create it: {e}")))?;
    let staging = request.out.join(format!(".certs-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    let made = write_all(request, &staging).map_err(bad);
    if made.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    let (node_hosts, leaf_not_after) = made?;
    for (from, to) in [("node", &node), ("client", &client)].into_iter().chain(request.existing_ca.is_none().then_some(("ca", &ca_dir))) {
        fs::rename(staging.join(from), to).map_err(|e| bad(format!("moving {from} into place: {e}")))?;
    }
    let _ = fs::remove_dir_all(&staging);
    Ok(CertsMade { ca: ca_dir, node, client, node_hosts, leaf_not_after })
}

fn write_all(request: &CertsRequest, staging: &Path) -> Result<(Vec<String>, OffsetDateTime), String> {
    let (ca_cert_pem, issuer) = match &request.existing_ca {
        Some(dir) => load_ca(dir)?,
        None => {
            let (pem, issuer) = new_ca(request)?;
            write_pair(&staging.join("ca"), &pem, &issuer.key().serialize_pem(), None)?;
            (pem, issuer)
        }
    };
    let mut hosts: Vec<String> = LOOPBACK_NAMES.iter().map(|h| h.to_string()).collect();
    for host in &request.hosts {
        if !hosts.contains(host) {
            hosts.push(host.clone());
        }
    }
    let not_after = request.not_before + Duration::days(i64::from(request.leaf_days));
    let node = leaf(request, hosts.clone(), "ubm cluster node", &[ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth])?;
    let node_pem = node.0.signed_by(&node.1, &issuer).map_err(|e| format!("signing the node certificate: {e}"))?.pem();
    write_pair(&staging.join("node"), &node_pem, &node.1.serialize_pem(), Some(&ca_cert_pem))?;
    let client = leaf(request, Vec::new(), "ubm cluster client", &[ExtendedKeyUsagePurpose::ClientAuth])?;
    let client_pem = client.0.signed_by(&client.1, &issuer).map_err(|e| format!("signing the client certificate: {e}"))?.pem();
    write_pair(&staging.join("client"), &client_pem, &client.1.serialize_pem(), Some(&ca_cert_pem))?;
    Ok((hosts, not_after))
}

/// A CA that may sign end-entity certificates only (path length 0).
fn new_ca(request: &CertsRequest) -> Result<(String, Issuer<'static, KeyPair>), String> {
    let key = KeyPair::generate().map_err(|e| format!("making the CA's key: {e}"))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.distinguished_name = name("ubm cluster CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    params.not_before = now.min(request.not_before) - Duration::minutes(5);
    params.not_after = now + Duration::days(i64::from(request.ca_days));
    let cert = params.self_signed(&key).map_err(|e| format!("making the CA's certificate: {e}"))?;
    Ok((cert.pem(), Issuer::new(params, key)))
}

fn load_ca(dir: &Path) -> Result<(String, Issuer<'static, KeyPair>), String> {
    let read = |name: &str| {
        fs::read_to_string(dir.join(name)).map_err(|e| format!("{}: {e} (--ca names the `ca` folder of an earlier run)", dir.join(name).display()))
    };
    let (cert, key) = (read(CERT_FILE)?, read(KEY_FILE)?);
    let key = KeyPair::from_pem(&key).map_err(|e| format!("{}: not a usable key ({e})", dir.join(KEY_FILE).display()))?;
    let issuer = Issuer::from_ca_cert_pem(&cert, key).map_err(|e| format!("{}: not a usable CA certificate ({e})", dir.join(CERT_FILE).display()))?;
    Ok((cert, issuer))
}

fn leaf(
    request: &CertsRequest,
    hosts: Vec<String>,
    common_name: &str,
    usages: &[ExtendedKeyUsagePurpose],
) -> Result<(CertificateParams, KeyPair), String> {
    let key = KeyPair::generate().map_err(|e| format!("making a key: {e}"))?;
    let mut params = CertificateParams::new(hosts).map_err(|e| format!("a host name cannot go into a certificate: {e}"))?;
    params.distinguished_name = name(common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = usages.to_vec();
    params.use_authority_key_identifier_extension = true;
    params.not_before = request.not_before - Duration::minutes(5);
    params.not_after = request.not_before + Duration::days(i64::from(request.leaf_days));
    Ok((params, key))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, "ubm");
    name
}

/// `dir/cert.pem`, `dir/key.pem` (mode 0600) and, for a key pair, `dir/ca.pem`.
fn write_pair(dir: &Path, cert_pem: &str, key_pem: &str, ca_pem: Option<&str>) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    write_file(&dir.join(KEY_FILE), key_pem, 0o600)?;
    write_file(&dir.join(CERT_FILE), cert_pem, 0o644)?;
    if let Some(ca) = ca_pem {
        write_file(&dir.join(CA_FILE), ca, 0o644)?;
    }
    Ok(())
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::ClusterTls;

    #[test]
    fn made_material_loads_and_private_keys_are_the_owners_only() {
        let out = tempfile::tempdir().expect("temp dir");
        let made = make(&CertsRequest::new(out.path().join("tls"), vec!["scheduler.internal".into()])).expect("made");
        for dir in [&made.node, &made.client] {
            ClusterTls::load(dir).expect("loads");
            let mode = fs::metadata(dir.join(KEY_FILE)).expect("key").permissions();
            assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        }
        assert!(made.node_hosts.contains(&"scheduler.internal".to_string()) && made.node_hosts.contains(&"localhost".to_string()));
        let client = ClusterTls::load(&made.client).expect("client").server_config().expect_err("no server usage").to_string();
        assert!(client.contains("not a server's certificate"), "{client}");
        ClusterTls::load(&made.node).expect("node").server_config().expect("a node serves");
        let again = make(&CertsRequest::new(out.path().join("tls"), Vec::new())).expect_err("never overwritten").to_string();
        assert!(again.contains("exists already"), "{again}");
    }

    #[test]
    fn expired_foreign_or_exposed_material_is_refused_with_what_to_do() {
        let out = tempfile::tempdir().expect("temp dir");
        let first = make(&CertsRequest::new(out.path().join("a"), Vec::new())).expect("made");
        let mut expired = CertsRequest::new(out.path().join("old"), Vec::new());
        expired.existing_ca = Some(first.ca.clone());
        expired.not_before = OffsetDateTime::now_utc() - Duration::days(30);
        expired.leaf_days = 1;
        let old = make(&expired).expect("made");
        let error = ClusterTls::load(&old.client).expect_err("expired").to_string();
        assert!(error.contains("expired on") && error.contains("--ca"), "{error}");

        // A certificate of one CA next to another CA's certificate.
        let second = make(&CertsRequest::new(out.path().join("b"), Vec::new())).expect("made");
        fs::copy(second.client.join(CA_FILE), first.client.join(CA_FILE)).expect("copy");
        let error = ClusterTls::load(&first.client).expect_err("foreign").to_string();
        assert!(error.contains("is not signed by the CA"), "{error}");

        let key = second.node.join(KEY_FILE);
        fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
        let error = ClusterTls::load(&second.node).expect_err("exposed").to_string();
        assert!(error.contains("chmod 600"), "{error}");
    }
}
