//! The two scalar functions the plans use beyond DataFusion's built-ins.
//!
//! Both are registered on every `SessionState` by [`register_all`]; Ballista ships plans that
//! name them, and every scheduler and executor resolves the name in its own registry.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int32Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result, ScalarValue, cast::as_string_array, exec_err};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

use crate::spark::Needle;

/// `spark_tokens_contain(text, word)`: whether Spark's `Tokenizer` would produce `word` from
/// `text` (see [`crate::spark`]). Null text gives null; `word` must be a literal.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SparkTokensContain {
    signature: Signature,
}

impl SparkTokensContain {
    /// The name plans use to call it.
    pub const NAME: &'static str = "spark_tokens_contain";

    pub fn new() -> Self {
        Self { signature: Signature::uniform(2, vec![DataType::Utf8], Volatility::Immutable) }
    }
}

impl Default for SparkTokensContain {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for SparkTokensContain {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [text, word] = args.args.as_slice() else {
            return exec_err!("{} takes (text, word)", Self::NAME);
        };
        let ColumnarValue::Scalar(ScalarValue::Utf8(Some(word))) = word else {
            return exec_err!("{}: the word must be a non-null string literal", Self::NAME);
        };
        let needle = Needle::new(word);
        match text {
            ColumnarValue::Array(array) => {
                let texts = as_string_array(array)?;
                let result: BooleanArray = texts.iter().map(|t| t.map(|t| needle.is_in(t))).collect();
                Ok(ColumnarValue::Array(Arc::new(result)))
            }
            ColumnarValue::Scalar(ScalarValue::Utf8(t)) => Ok(ColumnarValue::Scalar(ScalarValue::Boolean(t.as_deref().map(|t| needle.is_in(t))))),
            ColumnarValue::Scalar(other) => exec_err!("{}: unexpected text {other:?}", Self::NAME),
        }
    }
}

/// `cid_as_integer(cid)`: the vendor's text `cid` as a customer id, per the data contract:
/// trimmed of ASCII spaces, an optional sign and base-10 digits that fit an `INTEGER`.
/// Anything else (`abc`, `x123`, `12.0`, empty, null) is null and so joins no customer.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CidAsInteger {
    signature: Signature,
}

impl CidAsInteger {
    /// The name plans use to call it.
    pub const NAME: &'static str = "cid_as_integer";

    pub fn new() -> Self {
        Self { signature: Signature::uniform(1, vec![DataType::Utf8], Volatility::Immutable) }
    }
}

impl Default for CidAsInteger {
    fn default() -> Self {
        Self::new()
    }
}

/// The contract's rule for one cid; shared by the UDF and the tests.
pub fn parse_cid(cid: &str) -> Option<i32> {
    let digits = cid.trim_matches(' ');
    let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i32>().ok()
}

impl ScalarUDFImpl for CidAsInteger {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [cid] = args.args.as_slice() else {
            return exec_err!("{} takes (cid)", Self::NAME);
        };
        match cid {
            ColumnarValue::Array(array) => Ok(ColumnarValue::Array(cids_as_integers(array)?)),
            ColumnarValue::Scalar(ScalarValue::Utf8(c)) => Ok(ColumnarValue::Scalar(ScalarValue::Int32(c.as_deref().and_then(parse_cid)))),
            ColumnarValue::Scalar(other) => exec_err!("{}: unexpected cid {other:?}", Self::NAME),
        }
    }
}

fn cids_as_integers(array: &ArrayRef) -> Result<ArrayRef> {
    let cids: &StringArray = as_string_array(array)?;
    let ids: Int32Array = cids.iter().map(|c| c.and_then(parse_cid)).collect();
    debug_assert_eq!(ids.len(), cids.len());
    Ok(Arc::new(ids))
}

/// Every function the plans of this crate call, ready to register.
pub fn all() -> Vec<Arc<ScalarUDF>> {
    vec![Arc::new(ScalarUDF::from(SparkTokensContain::new())), Arc::new(ScalarUDF::from(CidAsInteger::new()))]
}

/// Registers [`all`] functions; call it on every session a plan of this crate runs in.
pub fn register_all(registry: &mut dyn FunctionRegistry) -> Result<()> {
    for udf in all() {
        registry.register_udf(udf).map_err(|e| DataFusionError::Context("registering ubm's functions".to_string(), Box::new(e)))?;
    }
    Ok(())
}

/// `spark_tokens_contain(text, word)` as an expression.
pub fn spark_tokens_contain(text: Expr, word: &str) -> Expr {
    ScalarUDF::from(SparkTokensContain::new()).call(vec![text, Expr::Literal(ScalarValue::Utf8(Some(word.to_string())), None)])
}

/// `cid_as_integer(cid)` as an expression.
pub fn cid_as_integer(cid: Expr) -> Expr {
    ScalarUDF::from(CidAsInteger::new()).call(vec![cid])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cid_rule_of_the_contract() {
        let cases = [
            ("12346", Some(12346)),
            ("  12346 ", Some(12346)),
            ("+17", Some(17)),
            ("-3", Some(-3)),
            ("007", Some(7)),
            ("abc", None),
            ("x123", None),
            ("12.0", None),
            ("", None),
            ("   ", None),
            ("1e3", None),
            ("\t12", None),
            ("99999999999", None),
            ("+", None),
            ("1 2", None),
        ];
        for (cid, expected) in cases {
            assert_eq!(parse_cid(cid), expected, "cid {cid:?}");
        }
    }
}
