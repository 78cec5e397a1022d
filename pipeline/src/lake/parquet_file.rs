//! A Parquet file being written into a partition.

use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::AsyncArrowWriter;

use crate::error::{PipelineError, Result};

/// A Parquet file being written into a partition.
pub struct ParquetFile {
    pub(super) writer: AsyncArrowWriter<object_store::buffered::BufWriter>,
    pub(super) rows: u64,
    /// Where it is staged, for error messages.
    pub(super) url: String,
}

impl ParquetFile {
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        let url = &self.url;
        self.writer.write(batch).await.map_err(|source| PipelineError::Parquet { url: url.clone(), source })
    }

    /// Finishes the file; returns how many rows it holds.
    pub async fn close(self) -> Result<u64> {
        let url = self.url;
        self.writer.close().await.map_err(|source| PipelineError::Parquet { url, source })?;
        Ok(self.rows)
    }
}
