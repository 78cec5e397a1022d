//! The embedded defaults: sample data and an SQLite OLTP database under a data directory, made
//! on first use, so that `ubm run` works with no flags and no servers.

use std::path::{Path, PathBuf};

use crate::datagen::{DatagenConfig, generate};
use crate::error::{PipelineError, Result};
use crate::oltp::Oltp;

/// Where the embedded defaults are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The sample `movie_review.csv`.
    pub reviews: PathBuf,
    /// The embedded OLTP database holding `user_purchase`.
    pub database: PathBuf,
}

/// A scale factor datagen can make: above 0, at most 1000 (about 100 GB of reviews).
pub fn check_scale(flag: &str, scale: f64) -> Result<()> {
    if !(scale > 0.0 && scale <= 1000.0) {
        return Err(PipelineError::BadInput {
            what: format!("{flag} {scale}"),
            reason: "out of range: use a number above 0 and at most 1000".to_string(),
        });
    }
    Ok(())
}

/// The sample data under `data_dir`, made at `scale` (seed 42) when it is not there yet. The
/// database is loaded under another name and renamed into place, so an interrupted first run
/// leaves no half-loaded database behind that a later run would take for whole.
pub async fn ensure_sample(data_dir: &Path, scale: f64) -> Result<Sample> {
    let sample_dir = data_dir.join("sample");
    let sample = Sample { reviews: sample_dir.join("movie_review.csv"), database: data_dir.join("oltp.sqlite") };
    if is_file(&sample.reviews).await && is_file(&sample.database).await {
        return Ok(sample);
    }
    check_scale("--sample-scale", scale)?;
    tracing::info!("making sample data (scale {scale}) under {} on first use…", data_dir.display());
    let config = DatagenConfig { scale, seed: 42, out: sample_dir };
    let generated = tokio::task::spawn_blocking(move || generate(&config))
        .await
        .map_err(|e| PipelineError::Stopped { what: "the sample generator", source: Some(e) })??;
    let partial = sample.database.with_extension("sqlite.partial");
    Oltp::Sqlite(partial.clone()).load_csv(&generated.purchases_csv).await?;
    tokio::fs::rename(&partial, &sample.database).await.map_err(PipelineError::io("moving into place", &sample.database))?;
    Ok(sample)
}

async fn is_file(path: &Path) -> bool {
    tokio::fs::metadata(path).await.is_ok_and(|m| m.is_file())
}
