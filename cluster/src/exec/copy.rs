//! A file copied by a task: the vendor's review file into the lake's raw zone, on an executor,
//! so that on a cluster its bytes never pass through the driver. Both locations may be on any
//! store the executors reach (S3 to S3 across buckets included, which object stores cannot copy
//! server-side); the copy streams in bounded memory, as a multipart upload.

use std::fmt;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, WriteMultipart};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{ClusterError, TaskFailure};

/// The copy's one row: the bytes copied.
pub static COPIED: LazyLock<SchemaRef> = LazyLock::new(|| Arc::new(Schema::new(vec![Field::new("bytes", DataType::UInt64, false)])));

/// What to copy where; it travels to the executor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCopy {
    pub from: String,
    pub to: String,
}

/// The copy as a table of one row: scanning it plans [`CopyExec`].
#[derive(Debug)]
pub struct CopyTable {
    copy: FileCopy,
}

impl CopyTable {
    pub fn new(copy: FileCopy) -> Self {
        Self { copy }
    }

    pub fn copy(&self) -> &FileCopy {
        &self.copy
    }
}

#[async_trait::async_trait]
impl TableProvider for CopyTable {
    fn schema(&self) -> SchemaRef {
        COPIED.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(CopyExec::new(self.copy.clone())))
    }
}

/// One partition, one task: copies the file and returns the bytes copied.
#[derive(Debug)]
pub struct CopyExec {
    copy: FileCopy,
    properties: Arc<PlanProperties>,
}

impl CopyExec {
    pub fn new(copy: FileCopy) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(COPIED.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self { copy, properties: Arc::new(properties) }
    }

    pub fn copy(&self) -> &FileCopy {
        &self.copy
    }
}

impl DisplayAs for CopyExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CopyExec: {} to {}", self.copy.from, self.copy.to)
    }
}

impl ExecutionPlan for CopyExec {
    fn name(&self) -> &str {
        "CopyExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(&self, _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() { Ok(self) } else { Err(DataFusionError::Internal("CopyExec has no inputs".to_string())) }
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!("CopyExec has one partition, not {partition}")));
        }
        let copy = self.copy.clone();
        let row = futures::stream::once(async move {
            let bytes = copy_file(&copy, &context).await.map_err(TaskFailure::raise)?;
            Ok(RecordBatch::try_new(COPIED.clone(), vec![Arc::new(UInt64Array::from(vec![bytes]))])?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(COPIED.clone(), row)))
    }
}

/// Streams `copy.from` into a multipart upload at `copy.to`; an upload that fails is aborted.
async fn copy_file(copy: &FileCopy, context: &TaskContext) -> Result<u64, ClusterError> {
    let (from, to) = (parse(&copy.from)?, parse(&copy.to)?);
    let registry = &context.runtime_env().object_store_registry;
    let store_of = |url: &Url| registry.get_store(url).map_err(ClusterError::engine(format!("finding the object store of {url}")));
    let (source, target) = (store_of(&from)?, store_of(&to)?);
    let (from_path, to_path) = (object_path(&from)?, object_path(&to)?);
    let reading = |source| ClusterError::Store { doing: "reading", url: copy.from.clone(), source };
    let writing = |source| ClusterError::Store { doing: "writing", url: copy.to.clone(), source };
    let mut chunks = source.get(&from_path).await.map_err(reading)?.into_stream();
    let mut upload = WriteMultipart::new(target.put_multipart(&to_path).await.map_err(writing)?);
    match pump(&mut chunks, &mut upload, copy).await {
        Ok(bytes) => {
            upload.finish().await.map_err(writing)?;
            Ok(bytes)
        }
        Err(e) => {
            let _ = upload.abort().await;
            Err(e)
        }
    }
}

/// Feeds every chunk of `chunks` to `upload`; returns how many bytes.
async fn pump(
    chunks: &mut futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
    upload: &mut WriteMultipart,
    copy: &FileCopy,
) -> Result<u64, ClusterError> {
    let mut bytes = 0u64;
    let reading = |source| ClusterError::Store { doing: "reading", url: copy.from.clone(), source };
    while let Some(chunk) = chunks.try_next().await.map_err(reading)? {
        bytes += chunk.len() as u64;
        // Waits while too many parts are in flight: memory stays bounded.
        upload.wait_for_capacity(8).await.map_err(|source| ClusterError::Store { doing: "writing", url: copy.to.clone(), source })?;
        upload.write(&chunk);
    }
    Ok(bytes)
}

fn parse(url: &str) -> Result<Url, ClusterError> {
    Url::parse(url).map_err(|e| ClusterError::BadLocation { location: url.to_string(), reason: format!("not a URL: {e}") })
}

fn object_path(url: &Url) -> Result<Path, ClusterError> {
    Path::from_url_path(url.path()).map_err(|e| ClusterError::BadLocation { location: url.to_string(), reason: format!("not an object path: {e}") })
}
