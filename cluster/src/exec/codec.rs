//! How ubm's own plan nodes travel to a Ballista scheduler and its executors.
//!
//! Ballista serializes logical plans (client → scheduler) and physical plans (scheduler →
//! executors) with extension codecs. These wrap Ballista's own codecs: each of ubm's four nodes
//! is encoded here as a small JSON document behind a magic prefix of its own (the review scan
//! `UBM1:`, the part writer `UBM1-PARTS:`, the Postgres slices `UBM1-PG:`, the file copy
//! `UBM1-COPY:`), and everything else is handed to Ballista unchanged. The same codecs are set on every session (see [`crate::Engine`]), so
//! every node decodes what every other node encodes.

use std::sync::Arc;

use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::{DataFusionError, Result, TableReference};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use ubm_jobs::csv::ReviewHeader;

use chrono::{DateTime, Utc};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig};
use datafusion::datasource::source::DataSourceExec;
use ubm_jobs::splits::Split;

use crate::exec::copy::{CopyExec, CopyTable, FileCopy};
use crate::exec::parts::{PartsSpec, WriteParts, WritePartsExec};
use crate::exec::postgres::{PgExtract, PgSliceSource, PgSliceTable, Slice, pg_scan_exec, slices_of};
use crate::exec::review::ReviewPass;
use crate::exec::review::file::{FileVersion, ReviewFile, ReviewLocation};
use crate::exec::review::scan::{ReviewScanSource, splits_in};
use crate::exec::review::table::{ReviewCsvTable, part_file, scan_exec};

/// Prefix that marks a payload as ubm's; Ballista's payloads are protobuf and never start so.
const MAGIC: &[u8] = b"UBM1:";
/// Prefix of a [`WriteParts`] / [`WritePartsExec`] payload: its [`PartsSpec`].
const PARTS_MAGIC: &[u8] = b"UBM1-PARTS:";
/// Prefix of a Postgres slice table or scan payload.
const PG_MAGIC: &[u8] = b"UBM1-PG:";
/// Prefix of a [`CopyTable`] / [`CopyExec`] payload: its [`FileCopy`].
const COPY_MAGIC: &[u8] = b"UBM1-COPY:";

/// A Postgres slice scan on the wire: the extract and the task's slices.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PgSlicesPayload {
    extract: PgExtract,
    slices: Vec<Slice>,
}

/// [`PgSliceTable`] on the wire (client → scheduler).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PgTablePayload {
    extract: PgExtract,
    on_cluster: bool,
}

/// The Postgres slice scan in `plan`, when it is one.
fn pg_scan(plan: &dyn ExecutionPlan) -> Option<(&FileScanConfig, &PgSliceSource)> {
    let exec = (plan as &dyn std::any::Any).downcast_ref::<DataSourceExec>()?;
    let config = (exec.data_source().as_ref() as &dyn std::any::Any).downcast_ref::<FileScanConfig>()?;
    Some((config, config.file_source().downcast_ref::<PgSliceSource>()?))
}

/// The review file's header as it travels: the checked column positions.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderPayload {
    field_count: usize,
    cid: usize,
    review_str: usize,
    start: usize,
}

impl From<&ReviewHeader> for HeaderPayload {
    fn from(h: &ReviewHeader) -> Self {
        Self { field_count: h.field_count, cid: h.cid, review_str: h.review_str, start: h.start }
    }
}

impl HeaderPayload {
    /// The header, refusing column positions a checked header cannot have.
    fn into_header(self) -> Result<ReviewHeader> {
        if self.cid >= self.field_count || self.review_str >= self.field_count {
            return Err(codec_error(format!(
                "the review header places cid ({}) or review_str ({}) beyond its {} fields",
                self.cid, self.review_str, self.field_count
            )));
        }
        Ok(ReviewHeader { field_count: self.field_count, cid: self.cid, review_str: self.review_str, start: self.start })
    }
}

/// What a pass knows of its review file, on the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePayload {
    location: String,
    header: HeaderPayload,
    eol: u8,
    data_start: u64,
    first_line: u64,
    size: u64,
    last_modified: DateTime<Utc>,
    e_tag: Option<String>,
}

impl From<&ReviewFile> for FilePayload {
    fn from(f: &ReviewFile) -> Self {
        Self {
            location: f.location.as_str().to_string(),
            header: (&f.header).into(),
            eol: f.eol,
            data_start: f.data_start,
            first_line: f.first_line,
            size: f.version.size,
            last_modified: f.version.last_modified,
            e_tag: f.version.e_tag.clone(),
        }
    }
}

impl FilePayload {
    fn into_file(self) -> Result<ReviewFile> {
        if !matches!(self.eol, b'\n' | b'\r') || self.data_start > self.size || self.first_line == 0 {
            return Err(codec_error(format!(
                "a review file with line terminator {}, records from byte {} of {} on line {}",
                self.eol, self.data_start, self.size, self.first_line
            )));
        }
        Ok(ReviewFile {
            location: ReviewLocation::parse(&self.location)?,
            header: self.header.into_header()?,
            eol: self.eol,
            data_start: self.data_start,
            first_line: self.first_line,
            version: FileVersion { size: self.size, last_modified: self.last_modified, e_tag: self.e_tag },
        })
    }
}

/// A pass on the wire: no splits for the boundaries pass, `[start, end, line]` for each split the
/// records pass reads.
fn pass_payload(pass: &ReviewPass, only: Option<&[u64]>) -> Option<Vec<[u64; 3]>> {
    match pass {
        ReviewPass::Boundaries => None,
        ReviewPass::Records(splits) => {
            let kept = match only {
                Some(starts) => splits_in(splits, starts.iter().copied()),
                None => splits.as_ref().clone(),
            };
            Some(kept.iter().map(|s| [s.start, s.end, s.line]).collect())
        }
    }
}

/// The pass, refusing splits that do not tile part of the file's records region in order.
fn pass_from(splits: Option<Vec<[u64; 3]>>, file: &ReviewFile) -> Result<ReviewPass> {
    let Some(splits) = splits else { return Ok(ReviewPass::Boundaries) };
    let splits: Vec<Split> = splits.into_iter().map(|[start, end, line]| Split { start, end, line }).collect();
    let mut previous_end = file.data_start;
    for split in &splits {
        if split.start < previous_end || split.end <= split.start || split.end > file.version.size || split.line < file.first_line {
            return Err(codec_error(format!(
                "the split {}..{} (line {}) does not fit the review file {} ({} bytes, records from byte {})",
                split.start,
                split.end,
                split.line,
                file.location.as_str(),
                file.version.size,
                file.data_start
            )));
        }
        previous_end = split.end;
    }
    Ok(ReviewPass::Records(Arc::new(splits)))
}

/// [`ReviewCsvTable`] on the wire (client → scheduler).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TablePayload {
    file: FilePayload,
    splits: Option<Vec<[u64; 3]>>,
    on_cluster: bool,
}

/// A review scan (`DataSourceExec` over [`ReviewScanSource`]) on the wire (scheduler →
/// executors): the task's file groups, as byte ranges, and the splits they start.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanPayload {
    file: FilePayload,
    splits: Option<Vec<[u64; 3]>>,
    groups: Vec<Vec<[u64; 2]>>,
}

/// The review scan in `plan`, when it is one.
fn review_scan(plan: &dyn ExecutionPlan) -> Option<(&FileScanConfig, &ReviewScanSource)> {
    let exec = (plan as &dyn std::any::Any).downcast_ref::<DataSourceExec>()?;
    let config = (exec.data_source().as_ref() as &dyn std::any::Any).downcast_ref::<FileScanConfig>()?;
    let source = config.file_source().downcast_ref::<ReviewScanSource>()?;
    Some((config, source))
}

fn ranges_of_groups(config: &FileScanConfig) -> Result<Vec<Vec<[u64; 2]>>> {
    config
        .file_groups
        .iter()
        .map(|group| {
            group
                .iter()
                .map(|part| {
                    let range = part.range.as_ref().ok_or_else(|| codec_error("a review range without its byte range"))?;
                    match (u64::try_from(range.start), u64::try_from(range.end)) {
                        (Ok(start), Ok(end)) => Ok([start, end]),
                        _ => Err(codec_error("a negative review range")),
                    }
                })
                .collect()
        })
        .collect()
}

/// Decodes a review scan, refusing ranges that are not the splits (records pass) or that fall
/// outside the records region (boundaries pass).
fn decode_scan(payload: ScanPayload) -> Result<Arc<dyn ExecutionPlan>> {
    let file = payload.file.into_file()?;
    let pass = pass_from(payload.splits, &file)?;
    if payload.groups.is_empty() {
        return Err(codec_error("a review scan needs at least one file group"));
    }
    let mut groups = Vec::with_capacity(payload.groups.len());
    for ranges in payload.groups {
        let mut parts = Vec::with_capacity(ranges.len());
        for [start, end] in ranges {
            let known = match &pass {
                ReviewPass::Records(splits) => start == end || splits.iter().any(|s| s.start == start && s.end == end),
                ReviewPass::Boundaries => file.data_start <= start && start < end && end <= file.version.size,
            };
            if !known || end > file.version.size {
                return Err(codec_error(format!("the range {start}..{end} is not a range of {} this scan reads", file.location.as_str())));
            }
            parts.push(part_file(&file, start, end)?);
        }
        groups.push(FileGroup::new(parts));
    }
    Ok(scan_exec(Arc::new(file), pass, groups)?)
}

fn codec_error(reason: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Internal(format!("ubm codec: {reason}"))
}

fn encode(payload: &impl Serialize, buf: &mut Vec<u8>) -> Result<()> {
    encode_as(MAGIC, payload, buf)
}

fn encode_as(magic: &[u8], payload: &impl Serialize, buf: &mut Vec<u8>) -> Result<()> {
    buf.extend_from_slice(magic);
    serde_json::to_writer(buf, payload).map_err(codec_error)
}

/// The payload behind the magic prefix, or `None` when it is not ubm's. A payload of ours that
/// does not have exactly the expected fields is an error, never a default.
fn decode<T: DeserializeOwned>(buf: &[u8]) -> Option<Result<T>> {
    decode_as(MAGIC, buf)
}

fn decode_as<T: DeserializeOwned>(magic: &[u8], buf: &[u8]) -> Option<Result<T>> {
    let body = buf.strip_prefix(magic)?;
    Some(serde_json::from_slice(body).map_err(codec_error))
}

/// The one input of a decoded [`WriteParts`] node or exec.
fn only_input<T: Clone>(inputs: &[T]) -> Result<T> {
    match inputs {
        [input] => Ok(input.clone()),
        _ => Err(codec_error(format!("a part writer has one input, not {}", inputs.len()))),
    }
}

/// Logical codec: ubm's review table and part writer, then Ballista's.
#[derive(Debug, Default)]
pub struct UbmLogicalCodec {
    ballista: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for UbmLogicalCodec {
    fn try_decode(&self, buf: &[u8], inputs: &[LogicalPlan], ctx: &TaskContext) -> Result<Extension> {
        match decode_as::<PartsSpec>(PARTS_MAGIC, buf) {
            Some(spec) => match WriteParts::plan(only_input(inputs)?, spec?)? {
                LogicalPlan::Extension(extension) => Ok(extension),
                _ => Err(codec_error("a part writer that is not an extension node")),
            },
            None => self.ballista.try_decode(buf, inputs, ctx),
        }
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        match WriteParts::of(node.node.as_ref()) {
            Some(parts) => encode_as(PARTS_MAGIC, parts.spec(), buf),
            None => self.ballista.try_encode(node, buf),
        }
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        if let Some(payload) = decode_as::<PgTablePayload>(PG_MAGIC, buf) {
            let PgTablePayload { extract, on_cluster } = payload?;
            return Ok(Arc::new(PgSliceTable::new(extract, on_cluster)));
        }
        if let Some(copy) = decode_as::<FileCopy>(COPY_MAGIC, buf) {
            return Ok(Arc::new(CopyTable::new(copy?)));
        }
        match decode::<TablePayload>(buf) {
            Some(payload) => {
                let payload = payload?;
                let file = payload.file.into_file()?;
                let pass = pass_from(payload.splits, &file)?;
                Ok(Arc::new(ReviewCsvTable::new(Arc::new(file), pass, payload.on_cluster)))
            }
            None => self.ballista.try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(&self, table_ref: &TableReference, node: Arc<dyn TableProvider>, buf: &mut Vec<u8>) -> Result<()> {
        if let Some(table) = node.downcast_ref::<PgSliceTable>() {
            return encode_as(PG_MAGIC, &PgTablePayload { extract: table.extract().clone(), on_cluster: table.on_cluster() }, buf);
        }
        if let Some(table) = node.downcast_ref::<CopyTable>() {
            return encode_as(COPY_MAGIC, table.copy(), buf);
        }
        match node.downcast_ref::<ReviewCsvTable>() {
            Some(table) => encode(
                &TablePayload { file: table.file().as_ref().into(), splits: pass_payload(table.pass(), None), on_cluster: table.on_cluster() },
                buf,
            ),
            None => self.ballista.try_encode_table_provider(table_ref, node, buf),
        }
    }

    fn try_decode_file_format(&self, buf: &[u8], ctx: &TaskContext) -> Result<Arc<dyn FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(&self, buf: &mut Vec<u8>, node: Arc<dyn FileFormatFactory>) -> Result<()> {
        self.ballista.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.ballista.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode_udf(node, buf)
    }
}

/// Physical codec: ubm's review scan and part writer, then Ballista's.
#[derive(Debug, Default)]
pub struct UbmPhysicalCodec {
    ballista: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for UbmPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if let Some(spec) = decode_as::<PartsSpec>(PARTS_MAGIC, buf) {
            return Ok(Arc::new(WritePartsExec::new(only_input(inputs)?, spec?)?));
        }
        if let Some(copy) = decode_as::<FileCopy>(COPY_MAGIC, buf) {
            return Ok(Arc::new(CopyExec::new(copy?)));
        }
        if let Some(payload) = decode_as::<PgSlicesPayload>(PG_MAGIC, buf) {
            let payload = payload?;
            if payload.slices.is_empty() {
                return Err(codec_error("an extract without slices"));
            }
            return Ok(pg_scan_exec(payload.extract, &payload.slices)?);
        }
        match decode::<ScanPayload>(buf) {
            Some(payload) => decode_scan(payload?),
            None => self.ballista.try_decode(buf, inputs, ctx, proto_converter),
        }
    }

    fn try_encode(&self, node: Arc<dyn ExecutionPlan>, buf: &mut Vec<u8>, proto_converter: &dyn PhysicalProtoConverterExtension) -> Result<()> {
        if let Some(parts) = (node.as_ref() as &dyn std::any::Any).downcast_ref::<WritePartsExec>() {
            return encode_as(PARTS_MAGIC, parts.spec(), buf);
        }
        if let Some(copy) = (node.as_ref() as &dyn std::any::Any).downcast_ref::<CopyExec>() {
            return encode_as(COPY_MAGIC, copy.copy(), buf);
        }
        if let Some((config, source)) = pg_scan(node.as_ref()) {
            return encode_as(PG_MAGIC, &PgSlicesPayload { extract: source.extract().clone(), slices: slices_of(config)? }, buf);
        }
        match review_scan(node.as_ref()) {
            Some((config, source)) => {
                let groups = ranges_of_groups(config)?;
                let starts: Vec<u64> = groups.iter().flatten().map(|[start, _]| *start).collect();
                let payload = ScanPayload { file: source.file().as_ref().into(), splits: pass_payload(source.pass(), Some(&starts)), groups };
                encode(&payload, buf)
            }
            None => self.ballista.try_encode(node, buf, proto_converter),
        }
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.ballista.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode_udf(node, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_payload(splits: &str, groups: &str) -> Vec<u8> {
        let file = r#"{"location":"file:///r.csv","header":{"field_count":3,"cid":0,"review_str":1,"start":0},"eol":10,"data_start":10,"first_line":2,"size":100,"last_modified":"2026-11-29T00:00:00Z","e_tag":"x"}"#;
        [MAGIC, format!(r#"{{"file":{file},"splits":{splits},"groups":{groups}}}"#).as_bytes()].concat()
    }

    fn decode_exec(buf: &[u8]) -> Result<Arc<dyn ExecutionPlan>> {
        decode_scan(decode::<ScanPayload>(buf).expect("ours")?)
    }

    #[test]
    fn a_malformed_scan_payload_fails_loudly() {
        let good = decode_exec(&scan_payload("[[10,60,2],[60,100,9]]", "[[[10,60]],[[60,100]]]")).expect("valid");
        assert_eq!(good.properties().output_partitioning().partition_count(), 2);
        assert!(decode_exec(&scan_payload("null", "[[[10,50],[50,100]]]")).is_ok(), "a boundaries pass");
        assert!(decode_exec(&scan_payload("[[10,60,2]]", "[[[10,70]]]")).is_err(), "a range that is not a split");
        assert!(decode_exec(&scan_payload("[[10,60,2],[50,100,9]]", "[[[10,60]]]")).is_err(), "overlapping splits");
        assert!(decode_exec(&scan_payload("[[10,160,2]]", "[[[10,160]]]")).is_err(), "past the end of the file");
        assert!(decode_exec(&scan_payload("null", "[[[0,50]]]")).is_err(), "the header is not a chunk");
        assert!(decode_exec(&scan_payload("null", "[]")).is_err(), "no group");
        let extra = [&scan_payload("null", "[[[10,50]]]")[..scan_payload("null", "[[[10,50]]]").len() - 1], br#","x":1}"#].concat();
        assert!(decode_exec(&extra).is_err(), "an unknown field is refused");
        let bad_header = String::from_utf8(scan_payload("null", "[[[10,50]]]")).expect("utf8").replace(r#""review_str":1"#, r#""review_str":4"#);
        assert!(decode_exec(bad_header.as_bytes()).is_err());
        assert!(decode::<ScanPayload>(b"\x08\x01protobuf").is_none(), "not ours: Ballista's");
    }
}
