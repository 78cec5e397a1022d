//! The environment file of a cluster's nodes (`/etc/ubm/env` on EMR), read by ubm itself.
//!
//! A node's services and its EMR steps both get their secrets (`UBM_OLTP`, `UBM_WAREHOUSE`) from
//! this file. Were it read by a shell (`. file`) in one place and by systemd's
//! `EnvironmentFile=` in another, a password holding `$`, `;`, a backtick, a space or quotes would
//! reach the two with different values, and the shell would run part of it. So there is one
//! reader, this one, with the simplest rules that can hold any password:
//!
//! - one `KEY=VALUE` per line; the key is letters, digits and `_`, not starting with a digit;
//! - the value is every byte after the first `=` up to the end of the line: no quotes are
//!   removed, nothing is expanded, no space is trimmed (a `\r` ending the line is dropped, so
//!   that a file saved on Windows means the same);
//! - blank lines and lines whose first non-blank character is `#` are skipped;
//! - a key may appear once.
//!
//! `ubm` reads the file named by `UBM_ENV_FILE` before anything else ([`load_into_process`]);
//! a variable already set in the process's environment wins over the file.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

/// The variable that names the file.
pub const ENV_FILE_VARIABLE: &str = "UBM_ENV_FILE";

/// One `KEY=VALUE` of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    /// The line it came from (1-based).
    pub line: usize,
}

/// Why a file is refused. The text names the file and the line, never the value (it may be a
/// secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileError {
    pub file: String,
    /// The line at fault (1-based); 0 when the file itself could not be read.
    pub line: usize,
    pub problem: String,
}

impl std::fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file, self.problem),
            line => write!(f, "{} line {line}: {}", self.file, self.problem),
        }
    }
}

impl std::error::Error for EnvFileError {}

/// The entries of `bytes`, the text of the file `file` (named in errors).
pub fn parse(file: &str, bytes: &[u8]) -> Result<Vec<Entry>, EnvFileError> {
    let mut entries: Vec<Entry> = Vec::new();
    for (index, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = index + 1;
        let error = |problem: String| EnvFileError { file: file.to_string(), line, problem };
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let first = raw.iter().position(|b| !b.is_ascii_whitespace());
        let Some(first) = first else { continue };
        if raw[first] == b'#' {
            continue;
        }
        let Some(equals) = raw.iter().position(|b| *b == b'=') else {
            return Err(error("expected KEY=VALUE".to_string()));
        };
        let key = std::str::from_utf8(&raw[..equals]).ok().filter(|key| is_key(key)).ok_or_else(|| {
            error("expected KEY=VALUE, the key of letters, digits and _ (not starting with a digit), with nothing before it".to_string())
        })?;
        let value = raw[equals + 1..].to_vec();
        if value.contains(&0) {
            return Err(error(format!("the value of {key} holds a NUL byte, which no environment variable can")));
        }
        if let Some(earlier) = entries.iter().find(|e| e.key == key) {
            return Err(error(format!("{key} is set again (first on line {}): keep one", earlier.line)));
        }
        entries.push(Entry { key: key.to_string(), value, line });
    }
    Ok(entries)
}

fn is_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Reads and parses the file at `path`.
pub fn read(path: &Path) -> Result<Vec<Entry>, EnvFileError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| EnvFileError { file: file.clone(), line: 0, problem: format!("cannot be read: {e}") })?;
    parse(&file, &bytes)
}

/// The file's text for `entries`, which [`parse`] reads back to the same entries.
pub fn render(entries: &[Entry]) -> Vec<u8> {
    let mut text = Vec::new();
    for entry in entries {
        text.extend_from_slice(entry.key.as_bytes());
        text.push(b'=');
        text.extend_from_slice(&entry.value);
        text.push(b'\n');
    }
    text
}

/// Sets every variable of the file named by `UBM_ENV_FILE` that the environment does not set
/// already. Returns how many were set; with no `UBM_ENV_FILE`, none.
///
/// # Safety
/// Changes the process's environment: call it before any other thread starts (first thing in
/// `main`), as `std::env::set_var` requires.
pub unsafe fn load_into_process() -> Result<usize, EnvFileError> {
    let Some(path) = std::env::var_os(ENV_FILE_VARIABLE) else { return Ok(0) };
    let entries = read(Path::new(&path))?;
    let mut set = 0;
    for entry in entries {
        if std::env::var_os(&entry.key).is_some() {
            continue;
        }
        // SAFETY: the caller guarantees no other thread runs (this function's contract).
        unsafe { std::env::set_var(&entry.key, OsString::from_vec(entry.value)) };
        set += 1;
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_every_byte_after_the_first_equals_sign() {
        let password = "p a$HOME;`id`\"q'=#\\ ";
        let text = format!("# secrets\n\nUBM_OLTP=postgres://u:{password}@db/x\r\n  # indented comment\nEMPTY=\n");
        let entries = parse("env", text.as_bytes()).expect("valid");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].key, "UBM_OLTP");
        assert_eq!(entries[0].value, format!("postgres://u:{password}@db/x").into_bytes());
        assert_eq!(entries[0].line, 3);
        assert_eq!(entries[1].value, b"");
        assert_eq!(parse("env", &render(&entries)).expect("round trip"), {
            let mut again = entries.clone();
            again[0].line = 1;
            again[1].line = 2;
            again
        });
    }

    #[test]
    fn a_bad_line_is_named_and_its_value_never_shown() {
        for (text, line, says) in [
            ("A=1\npostgres://u:hunter2@db/x\n", 2, "expected KEY=VALUE"),
            ("export A=hunter2\n", 1, "the key of letters"),
            (" A=hunter2\n", 1, "nothing before it"),
            ("1A=hunter2\n", 1, "not starting with a digit"),
            ("A=hunter2\nB=2\nA=hunter2\n", 3, "first on line 1"),
            ("A=hun\0ter2\n", 1, "NUL"),
        ] {
            let err = parse("/etc/ubm/env", text.as_bytes()).expect_err(text);
            assert_eq!(err.line, line, "{text:?}: {err}");
            let shown = err.to_string();
            assert!(shown.contains(says) && shown.starts_with(&format!("/etc/ubm/env line {line}:")), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }
}
