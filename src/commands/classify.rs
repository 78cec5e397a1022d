//! `ubm classify`: one review file into a classified partition and its rejects.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use ubm_cluster::Engine;
use ubm_jobs::RunDate;
use ubm_pipeline::classify::{ClassifyOutput, classify_into};
use ubm_pipeline::lake::RunStamp;
use ubm_pipeline::{Lake, Table, reviews_for};

use crate::args::EngineArgs;

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// The review CSV (header with cid and review_str): a path or s3:// URL.
    #[arg(long, value_name = "PATH|URL")]
    pub input: String,
    /// The run date, YYYY-MM-DD: the partition insert_date=D is written.
    #[arg(long)]
    pub date: RunDate,
    /// Output table directory or s3:// prefix: writes DIR/insert_date=D/ and
    /// DIR/_rejects/insert_date=D/rejects-NNNNN.jsonl.
    #[arg(long, value_name = "DIR|URL")]
    pub output: String,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Print the counts as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub async fn classify(args: ClassifyArgs) -> Result<ExitCode> {
    let engine = Engine::start_sized(args.engine.kind()?, args.engine.partitions.get()).await?;
    let lake = Lake::open(&args.output).await?;
    let source = reviews_for(&args.input, args.date)?;
    let stamp = RunStamp::unleased();
    let output = ClassifyOutput { lake: &lake, date: args.date, classified: Table(""), rejects: Table("_rejects"), stamp: &stamp };
    let counts = classify_into(&engine, &source, output).await?;
    let partition = counts.partition.as_ref().map(|u| u.to_string()).unwrap_or_default();
    if args.json {
        let json = serde_json::json!({
            "records_read": counts.read, "classified": counts.classified, "rejected": counts.rejected,
            "null_reviews": counts.null_reviews, "positive_reviews": counts.positive, "partition": partition,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!(
            "classified {} of {} records ({} positive, {} null reviews kept as negative), {} rejected\npartition: {partition}",
            counts.classified, counts.read, counts.positive, counts.null_reviews, counts.rejected
        );
        if counts.rejected > 0 {
            println!("rejects:   {}rejects-*.jsonl", lake.partition_url(Table("_rejects"), args.date)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
