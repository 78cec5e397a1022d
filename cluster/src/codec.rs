//! How ubm's own plan nodes travel to a Ballista scheduler and its executors.
//!
//! Ballista serializes logical plans (client → scheduler) and physical plans (scheduler →
//! executors) with extension codecs. These wrap Ballista's own codecs: ubm's review source is
//! encoded here as a small JSON document behind a magic prefix, and everything else is handed
//! to Ballista unchanged. The same codecs are set on every session (see [`crate::Engine`]), so
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
use serde_json::{Value, json};
use ubm_jobs::csv::ReviewHeader;

use crate::review_source::{ReviewCsvExec, ReviewCsvTable, ReviewLocation};

/// Prefix that marks a payload as ubm's; Ballista's payloads are protobuf and never start so.
const MAGIC: &[u8] = b"UBM1:";

fn header_json(header: &ReviewHeader) -> Value {
    json!({
        "field_count": header.field_count,
        "cid": header.cid,
        "review_str": header.review_str,
        "start": header.start,
    })
}

fn header_from_json(value: &Value) -> Result<ReviewHeader> {
    let field = |name: &str| {
        value[name].as_u64().map(|v| v as usize).ok_or_else(|| {
            DataFusionError::Internal(format!("ubm codec: the review header lacks `{name}`"))
        })
    };
    Ok(ReviewHeader {
        field_count: field("field_count")?,
        cid: field("cid")?,
        review_str: field("review_str")?,
        start: field("start")?,
    })
}

fn encode(value: &Value, buf: &mut Vec<u8>) -> Result<()> {
    buf.extend_from_slice(MAGIC);
    serde_json::to_writer(buf, value).map_err(|e| DataFusionError::Internal(format!("ubm codec: {e}")))
}

/// The JSON behind the magic prefix, or `None` when the payload is not ubm's.
fn decode(buf: &[u8]) -> Option<Result<Value>> {
    let body = buf.strip_prefix(MAGIC)?;
    Some(serde_json::from_slice(body).map_err(|e| DataFusionError::Internal(format!("ubm codec: {e}"))))
}

fn location_from_json(value: &Value) -> Result<ReviewLocation> {
    let location = value["location"]
        .as_str()
        .ok_or_else(|| DataFusionError::Internal("ubm codec: no `location`".to_string()))?;
    ReviewLocation::parse(location)
}

/// Logical codec: ubm's review table, then Ballista's.
#[derive(Debug, Default)]
pub struct UbmLogicalCodec {
    ballista: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for UbmLogicalCodec {
    fn try_decode(&self, buf: &[u8], inputs: &[LogicalPlan], ctx: &TaskContext) -> Result<Extension> {
        self.ballista.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        match decode(buf) {
            Some(value) => {
                let value = value?;
                let single_partition = value["single_partition"].as_bool().unwrap_or(true);
                let table = ReviewCsvTable::from_parts(location_from_json(&value)?, header_from_json(&value["header"])?, single_partition);
                Ok(Arc::new(table))
            }
            None => self.ballista.try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        match node.downcast_ref::<ReviewCsvTable>() {
            Some(table) => encode(
                &json!({
                    "location": table.location().as_str(),
                    "header": header_json(table.header()),
                    "single_partition": table.single_partition(),
                }),
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

/// Physical codec: ubm's review scan, then Ballista's.
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
        let Some(value) = decode(buf) else {
            return self.ballista.try_decode(buf, inputs, ctx, proto_converter);
        };
        let value = value?;
        let partitions = value["partitions"].as_u64().unwrap_or(1).max(1) as usize;
        let projection = match &value["projection"] {
            Value::Array(items) => Some(items.iter().filter_map(|v| v.as_u64().map(|i| i as usize)).collect()),
            _ => None,
        };
        let exec = ReviewCsvExec::new(
            location_from_json(&value)?,
            header_from_json(&value["header"])?,
            partitions,
            projection,
        )?;
        Ok(Arc::new(exec))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        match ReviewCsvExec::downcast(node.as_ref()) {
            Some(exec) => encode(
                &json!({
                    "location": exec.location().as_str(),
                    "header": header_json(exec.header()),
                    "partitions": exec.partitions(),
                    "projection": exec.projection(),
                }),
                buf,
            ),
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
