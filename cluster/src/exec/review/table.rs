//! A pass over a review file as a DataFusion table, cut into the file groups its tasks read
//! (see the [`super`] module for the two passes).

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use ubm_jobs::schema::REVIEW_RECORDS;
use ubm_jobs::splits::{Split, chunks, group_ranges};

use super::file::ReviewFile;
use super::scan::ReviewScanSource;
use super::{BOUNDARIES, ReviewPass};

/// On a cluster, a task reads about this much of the file (several splits, one after another),
/// as Spark gives a task a 128 MiB split: enough tasks to spread a large file over every
/// executor, few enough that scheduling them costs little.
pub const CLUSTER_TASK_BYTES: u64 = 128 * 1024 * 1024;

/// In-process, the file is read by this many tasks per core: a core whose task finishes early
/// takes up another instead of waiting for its sibling (the threads are shared, the tasks are
/// not). `ubm classify` at SF 1, 15 interleaved runs: 117 ms with 2 against 130 ms with 1
/// (medians; the same CPU time); 4 were no faster than 2.
const TASKS_PER_CORE: usize = 2;

/// The byte ranges of one pass, with the line each starts on (0 where the pass needs none).
fn ranges_of(file: &ReviewFile, pass: &ReviewPass) -> Vec<Split> {
    match pass {
        ReviewPass::Boundaries => {
            chunks(file.data_start, file.version.size, file.chunk_bytes()).into_iter().map(|(start, end)| Split { start, end, line: 0 }).collect()
        }
        ReviewPass::Records(splits) => splits.as_ref().clone(),
    }
}

/// A pass over a review file as a table.
#[derive(Debug)]
pub struct ReviewCsvTable {
    file: Arc<ReviewFile>,
    pass: ReviewPass,
    /// Whether the plan runs on a Ballista cluster, where tasks are spread over executors (see
    /// [`ReviewCsvTable::task_count`]).
    on_cluster: bool,
}

impl ReviewCsvTable {
    pub fn new(file: Arc<ReviewFile>, pass: ReviewPass, on_cluster: bool) -> Self {
        Self { file, pass, on_cluster }
    }

    pub fn file(&self) -> &Arc<ReviewFile> {
        &self.file
    }

    pub fn pass(&self) -> &ReviewPass {
        &self.pass
    }

    pub fn on_cluster(&self) -> bool {
        self.on_cluster
    }

    /// How many tasks (file groups) read the file. In-process [`TASKS_PER_CORE`] per target
    /// partition (each reads its share, one range at a time); on a cluster at least one per
    /// [`CLUSTER_TASK_BYTES`], so that every executor gets a share of a large file.
    fn task_count(&self, target_partitions: usize) -> usize {
        let by_size = self.file.records_bytes().div_ceil(CLUSTER_TASK_BYTES) as usize;
        if self.on_cluster { target_partitions.max(by_size) } else { target_partitions * TASKS_PER_CORE }.max(1)
    }
}

/// One range of the file as DataFusion's `PartitionedFile`, with the version it must be.
pub(crate) fn part_file(file: &ReviewFile, start: u64, end: u64) -> Result<PartitionedFile> {
    let (Ok(start), Ok(end)) = (i64::try_from(start), i64::try_from(end)) else {
        return Err(DataFusionError::Internal(format!("the range {start}..{end} is beyond what DataFusion can address")));
    };
    let mut part = PartitionedFile::new_with_range(file.location.path()?.to_string(), file.version.size, start, end);
    part.object_meta.last_modified = file.version.last_modified;
    part.object_meta.e_tag = file.version.e_tag.clone();
    Ok(part)
}

/// The file groups of a scan: `ranges` cut into `tasks` runs of consecutive ranges. A file with
/// no records still gets one (empty) range, so that the plan has a partition.
pub(crate) fn file_groups(file: &ReviewFile, ranges: &[Split], tasks: usize) -> Result<Vec<FileGroup>> {
    if ranges.is_empty() {
        let end = file.version.size;
        return Ok(vec![FileGroup::new(vec![part_file(file, end, end)?])]);
    }
    group_ranges(ranges, tasks, |r| r.end - r.start)
        .into_iter()
        .map(|g| Ok(FileGroup::new(g.iter().map(|r| part_file(file, r.start, r.end)).collect::<Result<_>>()?)))
        .collect()
}

/// The scan of one pass: a `DataSourceExec` over `groups`.
pub(crate) fn scan_exec(file: Arc<ReviewFile>, pass: ReviewPass, groups: Vec<FileGroup>) -> Result<Arc<DataSourceExec>> {
    let store_url = file.location.store_url()?;
    let source = Arc::new(ReviewScanSource::new(file, pass));
    // Each group is read by its own partition, in order: DataFusion would otherwise let an idle
    // partition take ranges from a sibling's group (work stealing), and a task's records would
    // no longer be one contiguous stretch of lines, which the part writers' reports and the
    // rejects' file order rely on (see `crate::exec::parts`).
    let config = FileScanConfigBuilder::new(store_url, source).with_file_groups(groups).with_preserve_order(true).build();
    Ok(DataSourceExec::from_data_source(config))
}

#[async_trait::async_trait]
impl TableProvider for ReviewCsvTable {
    fn schema(&self) -> SchemaRef {
        match self.pass {
            ReviewPass::Boundaries => BOUNDARIES.clone(),
            ReviewPass::Records(_) => REVIEW_RECORDS.clone(),
        }
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let tasks = self.task_count(state.config().target_partitions());
        let groups = file_groups(&self.file, &ranges_of(&self.file, &self.pass), tasks)?;
        let exec: Arc<dyn ExecutionPlan> = scan_exec(self.file.clone(), self.pass.clone(), groups)?;
        let Some(projection) = projection else { return Ok(exec) };
        let schema = exec.schema();
        let columns = projection
            .iter()
            .map(|&i| {
                let name = schema.field(i).name().clone();
                (Arc::new(Column::new(&name, i)) as Arc<dyn datafusion::physical_expr::PhysicalExpr>, name)
            })
            .collect::<Vec<_>>();
        Ok(Arc::new(ProjectionExec::try_new(columns, exec)?))
    }
}
