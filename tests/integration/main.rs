//! ubm's integration tests, one binary (`cargo test --test integration`). They drive the real
//! `ubm` binary, PySpark and DuckDB as peers, and Postgres; see tests/run.sh.

mod bad_input;
mod common;
mod deploy;
mod metric_peer;
mod object_store;
mod pipeline;
mod spark_compat;
mod submit;
