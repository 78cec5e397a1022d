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
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use ubm_jobs::csv::ReviewHeader;

use crate::review_source::{ReviewCsvExec, ReviewCsvTable, ReviewLocation};

/// Prefix that marks a payload as ubm's; Ballista's payloads are protobuf and never start so.
const MAGIC: &[u8] = b"UBM1:";

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

/// [`ReviewCsvTable`] on the wire (client → scheduler).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TablePayload {
    location: String,
    header: HeaderPayload,
    single_partition: bool,
}

/// [`ReviewCsvExec`] on the wire (scheduler → executors).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecPayload {
    location: String,
    header: HeaderPayload,
    partitions: usize,
    projection: Option<Vec<usize>>,
}

fn codec_error(reason: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Internal(format!("ubm codec: {reason}"))
}

fn encode(payload: &impl Serialize, buf: &mut Vec<u8>) -> Result<()> {
    buf.extend_from_slice(MAGIC);
    serde_json::to_writer(buf, payload).map_err(codec_error)
}

/// The payload behind the magic prefix, or `None` when it is not ubm's. A payload of ours that
/// does not have exactly the expected fields is an error, never a default.
fn decode<T: DeserializeOwned>(buf: &[u8]) -> Option<Result<T>> {
    let body = buf.strip_prefix(MAGIC)?;
    Some(serde_json::from_slice(body).map_err(codec_error))
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
        match decode::<TablePayload>(buf) {
            Some(payload) => {
                let payload = payload?;
                let location = ReviewLocation::parse(&payload.location)?;
                Ok(Arc::new(ReviewCsvTable::from_parts(location, payload.header.into_header()?, payload.single_partition)))
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
                &TablePayload {
                    location: table.location().as_str().to_string(),
                    header: table.header().into(),
                    single_partition: table.single_partition(),
                },
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
        let Some(payload) = decode::<ExecPayload>(buf) else {
            return self.ballista.try_decode(buf, inputs, ctx, proto_converter);
        };
        let payload = payload?;
        if payload.partitions == 0 {
            return Err(codec_error("a review scan needs at least one partition"));
        }
        // An out-of-range projection index fails in `new` (Schema::project), never silently.
        let exec = ReviewCsvExec::new(
            ReviewLocation::parse(&payload.location)?,
            payload.header.into_header()?,
            payload.partitions,
            payload.projection,
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
                &ExecPayload {
                    location: exec.location().as_str().to_string(),
                    header: exec.header().into(),
                    partitions: exec.partitions(),
                    projection: exec.projection().cloned(),
                },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn exec_payload(body: &str) -> Vec<u8> {
        [MAGIC, body.as_bytes()].concat()
    }

    const HEADER: &str = r#"{"field_count":3,"cid":0,"review_str":1,"start":0}"#;

    #[test]
    fn a_malformed_payload_fails_loudly() {
        let decode_exec = |body: &str| {
            let payload = decode::<ExecPayload>(&exec_payload(body)).expect("ours")?;
            ReviewCsvExec::new(ReviewLocation::parse(&payload.location)?, payload.header.into_header()?, payload.partitions, payload.projection)
        };
        let good = format!(r#"{{"location":"file:///r.csv","header":{HEADER},"partitions":2,"projection":[0,1]}}"#);
        assert_eq!(decode_exec(&good).expect("valid").partitions(), 2);
        let missing = format!(r#"{{"location":"file:///r.csv","header":{HEADER},"projection":null}}"#);
        assert!(decode_exec(&missing).is_err(), "a missing partition count is not defaulted");
        let beyond = format!(r#"{{"location":"file:///r.csv","header":{HEADER},"partitions":1,"projection":[0,99]}}"#);
        assert!(decode_exec(&beyond).is_err(), "a projection index out of range is refused");
        let negative = format!(r#"{{"location":"file:///r.csv","header":{HEADER},"partitions":1,"projection":[-1]}}"#);
        assert!(decode_exec(&negative).is_err());
        let extra = format!(r#"{{"location":"file:///r.csv","header":{HEADER},"partitions":1,"projection":null,"x":1}}"#);
        assert!(decode_exec(&extra).is_err(), "an unknown field is refused");
        let bad_header = r#"{"location":"file:///r.csv","header":{"field_count":1,"cid":0,"review_str":4,"start":0},"partitions":1,"projection":null}"#;
        assert!(decode_exec(bad_header).is_err());
        assert!(decode::<ExecPayload>(b"\x08\x01protobuf").is_none(), "not ours: Ballista's");
    }
}
