//! What `ubm deploy up` prepares before uploading: the binary the nodes run (checked for their
//! architecture, without debug information when binutils is at hand) and the environment file
//! (checked line by line, never echoed: it holds secrets).

use std::path::{Path, PathBuf};

use crate::{DeployError, Result};

/// EC2 families with a `g` after the generation digit (m6g, c7gn, r6gd) are Graviton: aarch64.
/// Fails when the nodes' architecture is not `ours`.
pub fn check_architecture(instance_type: &str, ours: &str) -> Result<()> {
    let family = instance_type.split('.').next().unwrap_or_default();
    let after_digit = family.trim_start_matches(|c: char| c.is_ascii_alphabetic()).trim_start_matches(|c: char| c.is_ascii_digit());
    let node_arch = if after_digit.starts_with('g') { "aarch64" } else { "x86_64" };
    if node_arch != ours {
        return Err(DeployError::Usage(format!(
            "{instance_type} nodes are {node_arch} but this ubm is {ours}: build ubm for \
             {node_arch}-unknown-linux-gnu and pass it with --binary, or choose a {ours} instance type"
        )));
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

/// The environment file the nodes get: AWS_REGION and the user's KEY=VALUE lines, checked.
pub async fn environment_file(path: Option<&Path>, region: &str) -> Result<Vec<u8>> {
    let mut lines = vec![format!("AWS_REGION={region}")];
    if let Some(path) = path {
        let text = tokio::fs::read_to_string(path).await.map_err(|source| DeployError::File {
            doing: "reading --env-file",
            path: path.display().to_string(),
            source,
        })?;
        for (number, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let valid_key =
                trimmed.split_once('=').is_some_and(|(key, _)| !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
            if !valid_key {
                // The line itself is not shown: it may hold a secret.
                return Err(DeployError::Usage(format!(
                    "--env-file {} line {}: expected KEY=VALUE, with letters, digits and _ in the key",
                    path.display(),
                    number + 1
                )));
            }
            lines.push(trimmed.to_string());
        }
    }
    Ok((lines.join("\n") + "\n").into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graviton_types_need_an_aarch64_binary() {
        assert!(check_architecture("m5.xlarge", "x86_64").is_ok());
        let err = check_architecture("m6g.xlarge", "x86_64").expect_err("aarch64 nodes").to_string();
        assert!(err.contains("--binary"), "{err}");
        assert!(check_architecture("c7gn.large", "aarch64").is_ok());
        assert!(check_architecture("m5.xlarge", "aarch64").is_err());
    }

    #[tokio::test]
    async fn a_bad_env_file_line_is_named_and_its_value_not_shown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ubm.env");
        std::fs::write(&path, "# secrets\nUBM_OLTP=postgres://u:pw@db/x\npostgres://u:hunter2@db/x\n").expect("write");
        let err = environment_file(Some(&path), "eu-west-1").await.expect_err("line 3").to_string();
        assert!(err.contains("line 3") && err.contains("KEY=VALUE"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        std::fs::write(&path, "UBM_OLTP=postgres://u:pw@db/x\n").expect("write");
        let text = String::from_utf8(environment_file(Some(&path), "eu-west-1").await.expect("ok")).expect("utf8");
        assert_eq!(text, "AWS_REGION=eu-west-1\nUBM_OLTP=postgres://u:pw@db/x\n");
    }
}
