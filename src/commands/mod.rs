//! One module per command. A command turns its flags into calls of the libraries and prints
//! what happened; it never calls another command.

pub mod cancel;
pub mod classify;
pub mod cluster;
pub mod datagen;
pub mod deploy;
pub mod publish;
pub mod report;
pub mod run;
pub mod status;
pub mod submit;
mod submit_cluster;

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daily pipeline (ingest, extract, classify, metric, load) for one date or a range.
    Run(run::RunArgs),
    /// Classify one review file into DIR/insert_date=D/ (Parquet + _SUCCESS) and its rejects.
    Classify(classify::ClassifyArgs),
    /// Generate deterministic sample data (movie_review.csv, user_purchase.csv) and load the OLTP table.
    Datagen(datagen::DatagenArgs),
    /// Write the lake as one self-contained HTML page: the latest day's figures and customers,
    /// trends over the dates, rejected records and the run history. `run` and `submit` refresh
    /// it after each run.
    Report(report::ReportArgs),
    /// Run a Ballista scheduler or executor that carries ubm's functions, codecs and object
    /// stores; point `ubm submit --scheduler df://HOST:PORT` at the scheduler.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Run the daily pipeline on a Ballista cluster: driven from this machine (client mode,
    /// showing each job's progress; --detach moves it to the background), or handed to a driver
    /// on the cluster (--deploy-mode cluster), which outlives this machine and scheduler restarts.
    Submit(submit::SubmitArgs),
    /// Publish a day its checks held (see `ubm run --help`, --check), exactly as its run staged
    /// it, once you have looked: the report records who accepted which failed checks, and when.
    Publish(publish::PublishArgs),
    /// Show each date of a lake (--lake); or a scheduler's cluster-mode runs (--runs), one run
    /// (its id), the jobs it knows, one job's stages and tasks, or its executors (--executors).
    Status(status::StatusArgs),
    /// Cancel a cluster-mode run (its id) or a job on a scheduler; the run fails without
    /// committing the work under way and leaves no staging (partitions it committed before stay
    /// until the date is rerun).
    Cancel(cancel::CancelArgs),
    /// Run ubm on AWS EMR: `up` (cluster), `run` (daily steps), `status`, `down`, `steps`,
    /// `airflow-dag`.
    #[command(subcommand)]
    Deploy(deploy::DeployCommand),
}

pub async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run(args) => run::run(args).await,
        Command::Classify(args) => classify::classify(args).await,
        Command::Datagen(args) => datagen::datagen(args).await,
        Command::Report(args) => report::report(args).await,
        Command::Cluster(command) => cluster::dispatch(command).await,
        Command::Submit(args) => submit::submit(args).await,
        Command::Publish(args) => publish::publish(args).await,
        Command::Status(args) => status::status(args).await,
        Command::Cancel(args) => cancel::cancel(args).await,
        Command::Deploy(command) => deploy::dispatch(command).await,
    }
}
