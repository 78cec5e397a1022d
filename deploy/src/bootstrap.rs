//! The bootstrap action every EMR node runs (`deploy/bootstrap.sh`, embedded in the binary so
//! that `ubm deploy up` uploads the script that matches it).

/// The script's text.
pub const BOOTSTRAP_SH: &str = include_str!("../bootstrap.sh");

/// The script's arguments: where the binary and the environment file are, the port of the
/// scheduler (which core nodes dial on the master), and the folder of the nodes' TLS material.
pub fn bootstrap_args(binary_url: &str, env_url: Option<&str>, scheduler_port: u16, tls_url: Option<&str>) -> Vec<String> {
    vec![binary_url.to_string(), env_url.unwrap_or("-").to_string(), scheduler_port.to_string(), tls_url.unwrap_or("-").to_string()]
}
