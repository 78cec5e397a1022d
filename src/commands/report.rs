//! `ubm report`: the lake as one self-contained HTML page (charts, tables, run history).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use ubm_pipeline::{Lake, dashboard};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The lake: a directory or s3://bucket/prefix, as `ubm run --lake` wrote it.
    #[arg(long, value_name = "DIR|URL")]
    pub lake: String,
    /// Where to write the page: a path or s3:// URL. Default: <lake>/_report/index.html.
    #[arg(long, value_name = "FILE|URL")]
    pub out: Option<String>,
}

pub async fn report(args: ReportArgs) -> Result<ExitCode> {
    let clock = Instant::now();
    let lake = Lake::open_existing(&args.lake).await?;
    let written = dashboard::write(&lake, args.out.as_deref()).await?;
    eprintln!("wrote the report in {:.2} s", clock.elapsed().as_secs_f64());
    println!("{written}");
    Ok(ExitCode::SUCCESS)
}
