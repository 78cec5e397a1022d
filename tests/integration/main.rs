//! ubm's integration tests, one binary (`cargo test --test integration`). They drive the real
//! `ubm` binary, PySpark and DuckDB as peers, and Postgres; see tests/run.sh.

mod audits;
mod backfill;
mod bad_input;
mod cluster_mode;
mod common;
mod dashboard;
mod deploy;
mod emr_nodes;
mod lake_checks;
mod laptop;
mod library;
mod metric_peer;
mod nodes;
mod object_store;
mod one_run_per_date;
mod pipeline;
mod retries;
mod spark_compat;
mod submit;
mod tls;
