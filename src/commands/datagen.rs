//! `ubm datagen`: deterministic sample data, and optionally the OLTP table loaded with it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use ubm_pipeline::datagen::{DatagenConfig, generate};
use ubm_pipeline::sample::check_scale;
use ubm_pipeline::{Oltp, SecretUrl};

#[derive(Debug, Args)]
pub struct DatagenArgs {
    /// Scale factor: 1 = 541,909 purchase lines and 100,000 reviews of about 1 KB.
    #[arg(long, default_value_t = 1.0, value_name = "SF")]
    pub scale: f64,
    /// Output directory for movie_review.csv and user_purchase.csv.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Random seed; the same seed and scale always give the same files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Also (re)create retail.user_purchase in this database and load it:
    /// postgres://… (through COPY) or sqlite://path.
    #[arg(long, env = "UBM_OLTP", hide_env_values = true, value_name = "URL")]
    pub oltp: Option<SecretUrl>,
}

pub async fn datagen(args: DatagenArgs) -> Result<ExitCode> {
    check_scale("--scale", args.scale)?;
    let oltp = args.oltp.map(|url| Oltp::from_url("--oltp", url)).transpose()?;
    let clock = std::time::Instant::now();
    let config = DatagenConfig { scale: args.scale, seed: args.seed, out: args.out };
    let generated = tokio::task::spawn_blocking(move || generate(&config)).await??;
    eprintln!(
        "wrote {} reviews to {} and {} purchase lines to {} in {:.1}s",
        generated.reviews,
        generated.reviews_csv.display(),
        generated.purchases,
        generated.purchases_csv.display(),
        clock.elapsed().as_secs_f64()
    );
    if let Some(oltp) = oltp {
        let rows = oltp.load_csv(&generated.purchases_csv).await?;
        eprintln!("loaded {rows} rows into user_purchase at {oltp}");
    }
    Ok(ExitCode::SUCCESS)
}
