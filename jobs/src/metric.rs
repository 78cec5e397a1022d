//! `user_behavior_metric`: purchases joined with classified reviews (`docs/pipeline.md`).

use std::fmt;
use std::str::FromStr;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::logical_expr::{Expr, JoinType, LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::{cast, col, lit, when};

use crate::date::RunDate;
use crate::schema::{AMOUNT_SPENT, col};
use crate::udf::cid_as_integer;

/// Which SQL the metric follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Semantics {
    /// Aggregate each side, then join: every purchase and every review counted once.
    #[default]
    Correct,
    /// The original pipeline's SQL: join, then aggregate. Every purchase line is repeated once
    /// per review and every review once per purchase line, so all three numbers come out
    /// multiplied. Kept so a team migrating from it can reconcile its numbers.
    Seed,
}

impl FromStr for Semantics {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "correct" => Ok(Semantics::Correct),
            "seed" => Ok(Semantics::Seed),
            other => Err(format!("unknown semantics `{other}`: use `correct` or `seed`")),
        }
    }
}

impl fmt::Display for Semantics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Semantics::Correct => "correct",
            Semantics::Seed => "seed",
        })
    }
}

const CID_INT: &str = "cid_int";
const SPENT: &str = "spent";

/// The metric for run date `date`.
///
/// `purchases` has the columns of [`crate::schema::USER_PURCHASE`] (the as-of snapshot);
/// `classified` holds the classified reviews of `date` only (`cid`, `positive_review`), which
/// is what the original `WHERE insert_date = D` selects. With [`Semantics::Correct`]:
/// ```sql
/// WITH p AS (SELECT customer_id, SUM(CAST(quantity AS DECIMAL(10,0)) * unit_price) AS spent
///            FROM purchases WHERE customer_id IS NOT NULL GROUP BY customer_id),
///      r AS (SELECT cid_as_integer(cid) AS cid_int,
///                   SUM(CASE WHEN positive_review THEN 1 ELSE 0 END) AS score, COUNT(*) AS cnt
///            FROM classified GROUP BY 1)
/// SELECT customer_id AS customerid, CAST(spent AS DECIMAL(18,5)) AS amount_spent,
///        CAST(score AS INT) AS review_score, CAST(cnt AS INT) AS review_count, DATE D AS insert_date
/// FROM p JOIN r ON p.customer_id = r.cid_int ORDER BY customerid
/// ```
/// With [`Semantics::Seed`], the original SQL (join first, then aggregate, `COUNT(cid)`).
/// Money stays decimal from `unit_price` to `amount_spent`.
pub fn user_behavior_metric(purchases: LogicalPlan, classified: LogicalPlan, date: RunDate, semantics: Semantics) -> Result<LogicalPlan> {
    let joined = match semantics {
        Semantics::Correct => aggregate_then_join(purchases, classified)?,
        Semantics::Seed => join_then_aggregate(purchases, classified)?,
    };
    LogicalPlanBuilder::from(joined)
        .project(vec![
            col(col::CUSTOMER_ID).alias(col::CUSTOMERID),
            cast(col(SPENT), DataType::Decimal128(AMOUNT_SPENT.0, AMOUNT_SPENT.1)).alias(col::AMOUNT_SPENT),
            cast(col(col::REVIEW_SCORE), DataType::Int32).alias(col::REVIEW_SCORE),
            cast(col(col::REVIEW_COUNT), DataType::Int32).alias(col::REVIEW_COUNT),
            lit(ScalarValue::Date32(Some(date.days_since_epoch()))).alias(col::INSERT_DATE),
        ])?
        .sort(vec![col(col::CUSTOMERID).sort(true, false)])?
        .build()
}

/// `quantity * unit_price`, exact: the integer becomes a decimal with no fractional digits.
fn line_amount() -> Expr {
    cast(col(col::QUANTITY), DataType::Decimal128(10, 0)) * col(col::UNIT_PRICE)
}

/// 1 where `condition` holds, else 0: `CASE WHEN condition THEN 1 ELSE 0 END`.
fn one_if(condition: Expr) -> Result<Expr> {
    when(condition, lit(1i64)).otherwise(lit(0i64))
}

fn aggregate_then_join(purchases: LogicalPlan, classified: LogicalPlan) -> Result<LogicalPlan> {
    let spent_per_customer = LogicalPlanBuilder::from(purchases)
        .filter(col(col::CUSTOMER_ID).is_not_null())?
        .aggregate(vec![col(col::CUSTOMER_ID)], vec![sum(line_amount()).alias(SPENT)])?
        .build()?;
    let reviews_per_cid = LogicalPlanBuilder::from(classified)
        .aggregate(
            vec![cid_as_integer(col(col::CID)).alias(CID_INT)],
            vec![sum(one_if(col(col::POSITIVE_REVIEW))?).alias(col::REVIEW_SCORE), count(lit(1)).alias(col::REVIEW_COUNT)],
        )?
        .build()?;
    LogicalPlanBuilder::from(spent_per_customer).join(reviews_per_cid, JoinType::Inner, (vec![col::CUSTOMER_ID], vec![CID_INT]), None)?.build()
}

fn join_then_aggregate(purchases: LogicalPlan, classified: LogicalPlan) -> Result<LogicalPlan> {
    let reviews = LogicalPlanBuilder::from(classified)
        .project(vec![col(col::CID), col(col::POSITIVE_REVIEW), cid_as_integer(col(col::CID)).alias(CID_INT)])?
        .build()?;
    LogicalPlanBuilder::from(purchases)
        .join(reviews, JoinType::Inner, (vec![col::CUSTOMER_ID], vec![CID_INT]), None)?
        .aggregate(
            vec![col(col::CUSTOMER_ID)],
            vec![
                sum(line_amount()).alias(SPENT),
                sum(one_if(col(col::POSITIVE_REVIEW))?).alias(col::REVIEW_SCORE),
                count(col(col::CID)).alias(col::REVIEW_COUNT),
            ],
        )?
        .build()
}

/// How the day's reviews matched customers, for the run report.
///
/// ```sql
/// SELECT COUNT(*) AS reviews,
///        SUM(CASE WHEN r.cid_int IS NULL THEN 1 ELSE 0 END) AS invalid_cid,
///        SUM(CASE WHEN r.cid_int IS NOT NULL AND c.customer_id IS NULL THEN 1 ELSE 0 END) AS no_customer
/// FROM (SELECT cid_as_integer(cid) AS cid_int FROM classified) r
/// LEFT JOIN (SELECT DISTINCT customer_id FROM purchases WHERE customer_id IS NOT NULL) c
///        ON r.cid_int = c.customer_id
/// ```
pub fn review_matches(purchases: LogicalPlan, classified: LogicalPlan) -> Result<LogicalPlan> {
    let customers = LogicalPlanBuilder::from(purchases)
        .filter(col(col::CUSTOMER_ID).is_not_null())?
        .aggregate(vec![col(col::CUSTOMER_ID)], Vec::<Expr>::new())?
        .build()?;
    let cids = LogicalPlanBuilder::from(classified).project(vec![cid_as_integer(col(col::CID)).alias(CID_INT)])?.build()?;
    LogicalPlanBuilder::from(cids)
        .join(customers, JoinType::Left, (vec![CID_INT], vec![col::CUSTOMER_ID]), None)?
        .aggregate(
            Vec::<Expr>::new(),
            vec![
                count(lit(1)).alias(REVIEWS),
                sum(one_if(col(CID_INT).is_null())?).alias(INVALID_CID),
                sum(one_if(col(CID_INT).is_not_null().and(col(col::CUSTOMER_ID).is_null()))?).alias(NO_CUSTOMER),
            ],
        )?
        .build()
}

/// The day's reviews and those whose `cid` is no customer id at all: the part of
/// [`review_matches`] that needs no purchases. With [`Semantics::Correct`] the rest follows from
/// the metric table itself, whose `review_count`s add up to the reviews that matched a customer
/// (the pipeline derives `no_customer` so, and this one-column scan replaces a second join).
///
/// ```sql
/// SELECT COUNT(*) AS reviews, SUM(CASE WHEN cid_as_integer(cid) IS NULL THEN 1 ELSE 0 END) AS invalid_cid
/// FROM classified
/// ```
pub fn review_cids(classified: LogicalPlan) -> Result<LogicalPlan> {
    LogicalPlanBuilder::from(classified)
        .aggregate(Vec::<Expr>::new(), vec![count(lit(1)).alias(REVIEWS), sum(one_if(cid_as_integer(col(col::CID)).is_null())?).alias(INVALID_CID)])?
        .build()
}

/// Output columns of [`review_matches`] ([`review_cids`] has the first two).
pub const REVIEWS: &str = "reviews";
pub const INVALID_CID: &str = "invalid_cid";
pub const NO_CUSTOMER: &str = "no_customer";
