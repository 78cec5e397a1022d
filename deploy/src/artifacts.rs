//! What `ubm deploy up` prepares before uploading: the binary the nodes run (checked for their
//! architecture, without debug information when binutils is at hand) and the environment file
//! (checked line by line, never echoed: it holds secrets).

use std::path::{Path, PathBuf};

use ubm_cluster::env_file;

use crate::{DeployError, Result};

/// The CPU of an instance type's nodes: EC2 families with a `g` after the generation digit
/// (m6g, c7gn, r6gd) are Graviton (aarch64), the others x86_64.
pub fn node_architecture(instance_type: &str) -> &'static str {
    let family = instance_type.split('.').next().unwrap_or_default();
    let after_digit = family.trim_start_matches(|c: char| c.is_ascii_alphabetic()).trim_start_matches(|c: char| c.is_ascii_digit());
    if after_digit.starts_with('g') { "aarch64" } else { "x86_64" }
}

/// Fails unless `binary` is a program the nodes of `instance_type` can run: a 64-bit
/// little-endian Linux ELF executable of their CPU. EMR fails a cluster only when a bootstrap
/// action fails, so a binary built on a Mac would otherwise restart forever on every node of a
/// cluster that reports WAITING. Reads the 20 bytes of the ELF header that say so (a parser
/// crate would add a dependency for four fields).
pub fn check_binary(binary: &Path, instance_type: &str) -> Result<()> {
    let mut header = [0u8; 20];
    let read = std::fs::File::open(binary).and_then(|mut file| std::io::Read::read_exact(&mut file, &mut header));
    read.map_err(|source| DeployError::File { doing: "reading the binary to upload", path: binary.display().to_string(), source })?;
    let wanted = node_architecture(instance_type);
    let refuse = |what: String| {
        DeployError::Usage(format!(
            "{} is {what}, but {instance_type} nodes run Linux on {wanted}: build ubm for {wanted}-unknown-linux-gnu \
             (`cargo build --release --target {wanted}-unknown-linux-gnu`, on Linux or with cross) and pass it with --binary",
            binary.display()
        ))
    };
    if header[..4] != *b"\x7fELF" {
        return Err(refuse(match header[..4] {
            [0xcf, 0xfa, 0xed, 0xfe] | [0xfe, 0xed, 0xfa, 0xcf] | [0xca, 0xfe, 0xba, 0xbe] => "a macOS (Mach-O) program".to_string(),
            [b'M', b'Z', ..] => "a Windows program".to_string(),
            [b'#', b'!', ..] => "a script, not a program".to_string(),
            _ => "not a program (no ELF header)".to_string(),
        }));
    }
    // e_ident: class (2 = 64-bit), data (1 = little-endian), OS ABI (0 = System V, 3 = Linux).
    if header[4] != 2 || header[5] != 1 || !matches!(header[7], 0 | 3) {
        return Err(refuse("an ELF file, but not a 64-bit little-endian Linux one".to_string()));
    }
    // e_type (2 = executable, 3 = position-independent executable) and e_machine.
    let kind = u16::from_le_bytes([header[16], header[17]]);
    let machine = match u16::from_le_bytes([header[18], header[19]]) {
        62 => "x86_64",
        183 => "aarch64",
        other => return Err(refuse(format!("a Linux program for another CPU (ELF machine {other})"))),
    };
    if !matches!(kind, 2 | 3) {
        return Err(refuse("an ELF file but not an executable (a library or an object file?)".to_string()));
    }
    if machine != wanted {
        return Err(refuse(format!("a Linux {machine} program")));
    }
    Ok(())
}

/// The binary to upload: a copy without debug information when `objcopy` is at hand (the
/// release build carries line tables for backtraces: 937 MB instead of 199 MB), else the binary
/// as it is. Remove the copy with [`LeanBinary::remove`] once uploaded.
#[derive(Debug)]
pub struct LeanBinary {
    path: PathBuf,
    temporary: bool,
}

impl LeanBinary {
    pub async fn of(binary: &Path) -> Result<LeanBinary> {
        let lean = std::env::temp_dir().join(format!("ubm-deploy-{}", std::process::id()));
        let stripped = tokio::process::Command::new("objcopy").arg("--strip-debug").arg(binary).arg(&lean).status().await;
        match stripped {
            Ok(status) if status.success() => Ok(LeanBinary { path: lean, temporary: true }),
            _ => {
                let size = tokio::fs::metadata(binary)
                    .await
                    .map_err(|source| DeployError::File { doing: "reading", path: binary.display().to_string(), source })?
                    .len();
                tracing::warn!("objcopy (binutils) is not available: uploading {} as it is, {} MB", binary.display(), size / 1_000_000);
                Ok(LeanBinary { path: binary.to_path_buf(), temporary: false })
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the stripped copy (the original binary stays).
    pub async fn remove(self) {
        if self.temporary {
            let _ = tokio::fs::remove_file(&self.path).await;
        }
    }
}

/// The environment file the nodes get: AWS_REGION (unless the user's file sets it) and the
/// user's `KEY=VALUE` lines, checked by the reader the nodes use (`ubm_cluster::env_file`), so
/// that a file `up` accepts means on the nodes exactly what it means here.
pub async fn environment_file(path: Option<&Path>, region: &str) -> Result<Vec<u8>> {
    let mut entries = match path {
        Some(path) => {
            let bytes = tokio::fs::read(path).await.map_err(|source| DeployError::File {
                doing: "reading --env-file",
                path: path.display().to_string(),
                source,
            })?;
            let entries = env_file::parse(&format!("--env-file {}", path.display()), &bytes).map_err(|e| DeployError::Usage(e.to_string()))?;
            warn_of_quotes(path, &entries);
            entries
        }
        None => Vec::new(),
    };
    if !entries.iter().any(|entry| entry.key == "AWS_REGION") {
        entries.insert(0, env_file::Entry { key: "AWS_REGION".to_string(), value: region.as_bytes().to_vec(), line: 0 });
    }
    Ok(env_file::render(&entries))
}

/// A value in quotes keeps them (the file is not shell): say so, without showing the value.
fn warn_of_quotes(path: &Path, entries: &[env_file::Entry]) {
    for entry in entries {
        let quoted = |q: u8| entry.value.len() >= 2 && entry.value.first() == Some(&q) && entry.value.last() == Some(&q);
        if quoted(b'"') || quoted(b'\'') {
            tracing::warn!(
                "--env-file {} line {}: the value of {} is in quotes, and the quotes are part of it (the file is read as KEY=VALUE, \
                 every byte after `=`, not by a shell); remove them unless they belong to the value",
                path.display(),
                entry.line,
                entry.key
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graviton_types_are_aarch64() {
        assert_eq!(node_architecture("m5.xlarge"), "x86_64");
        assert_eq!(node_architecture("m6g.xlarge"), "aarch64");
        assert_eq!(node_architecture("c7gn.large"), "aarch64");
        assert_eq!(node_architecture("m6a.xlarge"), "x86_64");
    }

    #[test]
    fn only_a_linux_program_of_the_nodes_cpu_is_uploaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let this = std::env::current_exe().expect("this test binary");
        let ours = std::env::consts::ARCH;
        let other_type = if ours == "x86_64" { "m6g.xlarge" } else { "m5.xlarge" };
        let our_type = if ours == "x86_64" { "m5.xlarge" } else { "m6g.xlarge" };
        check_binary(&this, our_type).expect("this machine's own binary");
        let err = check_binary(&this, other_type).expect_err("another CPU").to_string();
        assert!(err.contains(&format!("a Linux {ours} program")) && err.contains("--binary"), "{err}");
        let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        for (bytes, says) in [
            (vec![0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1, 3, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0], "macOS (Mach-O)"),
            (b"MZ\x90\x00 windows stub bytes".to_vec(), "a Windows program"),
            (b"#!/bin/sh\necho not ubm\n".to_vec(), "a script"),
            (
                {
                    elf.extend([3, 0, 40, 0]);
                    elf.clone()
                },
                "ELF machine 40",
            ),
            (b"tiny".to_vec(), "reading the binary"),
        ] {
            let path = dir.path().join("ubm");
            std::fs::write(&path, &bytes).expect("write");
            let err = check_binary(&path, "m5.xlarge").expect_err(says).to_string();
            assert!(err.contains(says), "{says}: {err}");
        }
    }

    #[tokio::test]
    async fn a_bad_env_file_line_is_named_and_its_value_not_shown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ubm.env");
        std::fs::write(&path, "# secrets\nUBM_OLTP=postgres://u:pw@db/x\npostgres://u:hunter2@db/x\n").expect("write");
        let err = environment_file(Some(&path), "eu-west-1").await.expect_err("line 3").to_string();
        assert!(err.contains("line 3") && err.contains("KEY=VALUE"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        std::fs::write(&path, "UBM_OLTP=postgres://u: p$w`d;\"'@db/x \n").expect("write");
        let text = String::from_utf8(environment_file(Some(&path), "eu-west-1").await.expect("ok")).expect("utf8");
        assert_eq!(text, "AWS_REGION=eu-west-1\nUBM_OLTP=postgres://u: p$w`d;\"'@db/x \n", "values pass byte for byte");
        std::fs::write(&path, "AWS_REGION=us-east-2\n").expect("write");
        let text = String::from_utf8(environment_file(Some(&path), "eu-west-1").await.expect("ok")).expect("utf8");
        assert_eq!(text, "AWS_REGION=us-east-2\n", "the user's region is kept");
    }
}
