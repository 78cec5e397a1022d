//! The review classifier: the Spark job of `docs/classifier.md` as one logical plan.

use datafusion::common::Result;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::{coalesce, col, lit};

use crate::schema::col;
use crate::spark::POSITIVE_WORD;
use crate::udf::spark_tokens_contain;

/// Classifies every record a review source yields (schema [`crate::schema::REVIEW_RECORDS`]).
///
/// Equivalent to:
/// ```sql
/// SELECT line, cid,
///        COALESCE(spark_tokens_contain(review_str, 'good'), false) AS positive_review,
///        review_str IS NULL AND reject_reason IS NULL              AS review_is_null,
///        reject_reason, rejected_record
/// FROM reviews
/// ```
/// Spark's Tokenizer fails the whole job on a null `review_str`; here such a review is
/// classified `false`, kept, and flagged in `review_is_null` so the run report can count it.
/// Rejected records pass through (with `positive_review = false`) so that one scan feeds both
/// the classified output and the rejects output: the writer splits them on `reject_reason`.
pub fn classify_reviews(reviews: LogicalPlan) -> Result<LogicalPlan> {
    let review = col(col::REVIEW_STR);
    LogicalPlanBuilder::from(reviews)
        .project(vec![
            col(col::LINE),
            col(col::CID),
            coalesce(vec![spark_tokens_contain(review.clone(), POSITIVE_WORD), lit(false)]).alias(col::POSITIVE_REVIEW),
            review.is_null().and(col(col::REJECT_REASON).is_null()).alias(col::REVIEW_IS_NULL),
            col(col::REJECT_REASON),
            col(col::REJECTED_RECORD),
        ])?
        .build()
}
