//! Connection URLs carry passwords; these never reach logs, errors or the run report.

use std::fmt;

use crate::error::PipelineError;

/// A connection URL that displays with its password replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL's scheme, lower-cased (`POSTGRES://` is `postgres`).
    pub fn scheme(&self) -> Option<String> {
        self.0.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase())
    }

    /// This URL, checked to be a `postgres://` (or `postgresql://`) URL that tokio-postgres can
    /// use, so that a malformed one fails when it is given, not when a task first connects. The
    /// error names `flag` and shows the URL with its password redacted.
    pub fn into_postgres(self, flag: &str) -> Result<Self, PipelineError> {
        let bad = |reason: String| PipelineError::BadInput { what: format!("{flag} `{}`", self.redacted()), reason };
        if !matches!(self.scheme().as_deref(), Some("postgres" | "postgresql")) {
            return Err(bad("not a postgres:// URL: use postgres://user:password@host:5432/database".to_string()));
        }
        // The scheme's case does not matter to a person; tokio-postgres wants it lower-case.
        let (scheme, rest) = self.0.split_once("://").unwrap_or(("", &self.0));
        let url = format!("{}://{rest}", scheme.to_ascii_lowercase());
        if let Err(e) = url.parse::<tokio_postgres::Config>() {
            return Err(bad(format!("tokio-postgres cannot use it ({e}); a password with @, #, / or ? must be percent-encoded")));
        }
        Ok(Self(url))
    }

    /// The real URL, for the one call that connects.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL as it may be shown.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
    }
}

/// Replaces every password in `text` with `***`: in a URL, everything between the user name's
/// `:` and the last `@` before the host (a password may itself hold `@`, `#`, `/` or `?`), and the
/// value of every `password=` key (libpq's `key=value` strings, or a URL's query).
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    if let Some(scheme_end) = out.find("://") {
        let start = scheme_end + 3;
        if let Some(at) = out[start..].rfind('@')
            && let Some(colon) = out[start..start + at].find(':')
        {
            out.replace_range(start + colon + 1..start + at, "***");
        }
    }
    redact_password_values(&out)
}

/// `password=VALUE` (any case) with VALUE up to a space, `&` or `;`, or a quoted VALUE whole.
fn redact_password_values(text: &str) -> String {
    const KEY: &str = "password=";
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(found) = lower[pos..].find(KEY) {
        let value_start = pos + found + KEY.len();
        out.push_str(&text[pos..value_start]);
        let rest = &text[value_start..];
        let value_len = match rest.chars().next() {
            Some(quote @ ('\'' | '"')) => rest[1..].find(quote).map_or(rest.len(), |i| i + 2),
            _ => rest.find([' ', '&', ';', '\t', '\n']).unwrap_or(rest.len()),
        };
        out.push_str("***");
        pos = value_start + value_len;
    }
    out.push_str(&text[pos..]);
    out
}

impl std::str::FromStr for SecretUrl {
    type Err = std::convert::Infallible;

    /// Takes a flag's value as given, so that an argument parser's error can never echo it;
    /// the code that uses it checks it and says what is wrong with the password redacted.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(SecretUrl::new(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_password_shape_is_hidden() {
        for (given, secret) in [
            ("POSTGRES://etl:Sup3rPw@db:5432/x", "Sup3rPw"),
            ("mysql://etl:Sup3rPw@db/x", "Sup3rPw"),
            ("postgres://etl:p@ss#w/rd?x@db:5432/x", "p@ss#w/rd?x"),
            ("postgres://etl:Sup3r@Pw@db/x", "Sup3r@Pw"),
            ("host=db user=etl password=Sup3rPw dbname=x", "Sup3rPw"),
            ("host=db PASSWORD='Sup3r Pw' dbname=x", "Sup3r Pw"),
            ("postgres://db/x?user=etl&password=Sup3rPw&sslmode=require", "Sup3rPw"),
        ] {
            let shown = redact(given);
            assert!(!shown.contains(secret), "{given} -> {shown}");
            assert!(shown.contains("***"), "{given} -> {shown}");
        }
        assert_eq!(redact("postgres://etl:p@ss#word@db:5432/x"), "postgres://etl:***@db:5432/x");
        assert_eq!(redact("host=db password=pw dbname=x"), "host=db password=*** dbname=x");
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(redact("postgres://ana:s3cr:et@db:5432/x"), "postgres://ana:***@db:5432/x");
        assert_eq!(redact("postgres://ana@db/x?password=hunter2&sslmode=disable"), "postgres://ana@db/x?password=***&sslmode=disable");
        assert_eq!(redact("postgres://db/x"), "postgres://db/x");
        assert!(!format!("{:?}", SecretUrl::new("postgres://u:pw@h/d")).contains("pw"));
    }
}
