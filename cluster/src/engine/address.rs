//! A scheduler's address, parsed once: `df://HOST:PORT`, the form Ballista's client takes.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use url::Url;

use crate::ClusterError;
use crate::tls::ClusterTls;

/// Where a Ballista scheduler listens: its gRPC service and, on the same port, its REST API;
/// and, for a cluster that requires it, the TLS material this machine reaches it with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SchedulerAddress {
    host: String,
    port: u16,
    /// `http://HOST:PORT/` (`https://` with TLS), the base of the REST API.
    rest_base: Url,
    tls: Option<Arc<ClusterTls>>,
}

impl SchedulerAddress {
    /// Reads `HOST:PORT`, with or without `df://` (the executor's `--scheduler` takes both).
    pub fn from_host_port(text: &str) -> Result<Self, ClusterError> {
        Self::parse_authority(text, text.strip_prefix("df://").unwrap_or(text))
    }

    fn parse_authority(text: &str, authority: &str) -> Result<Self, ClusterError> {
        let bad = |reason: String| ClusterError::BadLocation { location: text.to_string(), reason };
        let authority = authority.trim_end_matches('/');
        let url = Url::parse(&format!("http://{authority}/")).map_err(|e| bad(format!("not a HOST:PORT ({e})")))?;
        if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
            return Err(bad("a scheduler address is only df://HOST:PORT".to_string()));
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("the host is missing".to_string()))?;
        let port = url.port().ok_or_else(|| bad("the port is missing: a scheduler address looks like df://HOST:50050".to_string()))?;
        Ok(Self { host: host.to_string(), port, rest_base: url.clone(), tls: None })
    }

    /// The same scheduler, reached with mutual TLS (`Some`) or in plaintext (`None`).
    pub fn with_tls(mut self, tls: Option<Arc<ClusterTls>>) -> Self {
        // Only the scheme changes, between two schemes `Url` knows: this cannot fail.
        let _ = self.rest_base.set_scheme(if tls.is_some() { "https" } else { "http" });
        self.tls = tls;
        self
    }

    /// The TLS material this machine reaches the scheduler with, if the cluster uses TLS.
    pub fn tls(&self) -> Option<&Arc<ClusterTls>> {
        self.tls.as_ref()
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `HOST:PORT`, for a socket connection.
    pub fn host_port(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The base URL of the scheduler's REST API.
    pub fn rest_base(&self) -> &Url {
        &self.rest_base
    }
}

impl FromStr for SchedulerAddress {
    type Err = ClusterError;

    /// Reads `df://HOST:PORT`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let authority = text.strip_prefix("df://").ok_or_else(|| ClusterError::BadLocation {
            location: text.to_string(),
            reason: "not a scheduler address: use df://HOST:PORT (port 50050 by default)".to_string(),
        })?;
        Self::parse_authority(text, authority)
    }
}

impl fmt::Display for SchedulerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "df://{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_needs_the_df_scheme_and_a_port() {
        let address: SchedulerAddress = "df://127.0.0.1:50050".parse().expect("valid");
        assert_eq!((address.host(), address.port()), ("127.0.0.1", 50050));
        assert_eq!(address.to_string(), "df://127.0.0.1:50050");
        assert_eq!(address.rest_base().as_str(), "http://127.0.0.1:50050/");
        let no_scheme = "127.0.0.1:50050".parse::<SchedulerAddress>().expect_err("no df://").to_string();
        assert!(no_scheme.contains("use df://HOST:PORT"), "{no_scheme}");
        let no_port = "df://scheduler.internal".parse::<SchedulerAddress>().expect_err("no port").to_string();
        assert!(no_port.contains("port is missing"), "{no_port}");
        assert!("df://h:1/path".parse::<SchedulerAddress>().is_err());
        assert_eq!(SchedulerAddress::from_host_port("h:7").expect("bare").to_string(), "df://h:7");
        assert_eq!(SchedulerAddress::from_host_port("df://h:7").expect("df").port(), 7);
    }
}
