//! The schemas of every table the pipeline reads or writes (`docs/pipeline.md`).

use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;

/// Precision and scale of `retail.user_purchase.unit_price` (`numeric(8,3)`).
pub const UNIT_PRICE: (u8, i8) = (8, 3);
/// Precision and scale of `user_behavior_metric.amount_spent` (`DECIMAL(18,5)`).
pub const AMOUNT_SPENT: (u8, i8) = (18, 5);

/// Column names, so plans and writers cannot drift apart.
pub mod col {
    pub const LINE: &str = "line";
    pub const CID: &str = "cid";
    pub const REVIEW_STR: &str = "review_str";
    pub const REJECT_REASON: &str = "reject_reason";
    pub const REJECTED_RECORD: &str = "rejected_record";
    pub const POSITIVE_REVIEW: &str = "positive_review";
    pub const REVIEW_IS_NULL: &str = "review_is_null";
    pub const CUSTOMER_ID: &str = "customer_id";
    pub const QUANTITY: &str = "quantity";
    pub const UNIT_PRICE: &str = "unit_price";
    pub const INVOICE_DATE: &str = "invoice_date";
    pub const CUSTOMERID: &str = "customerid";
    pub const AMOUNT_SPENT: &str = "amount_spent";
    pub const REVIEW_SCORE: &str = "review_score";
    pub const REVIEW_COUNT: &str = "review_count";
    pub const INSERT_DATE: &str = "insert_date";
}

/// What a review source yields per record of `movie_review.csv`: the fields the classifier
/// needs, or, for a record that could not be read, why and the record's raw bytes.
pub static REVIEW_RECORDS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(col::LINE, DataType::UInt64, false),
        Field::new(col::CID, DataType::Utf8, true),
        Field::new(col::REVIEW_STR, DataType::Utf8, true),
        Field::new(col::REJECT_REASON, DataType::Utf8, true),
        Field::new(col::REJECTED_RECORD, DataType::Binary, true),
    ]))
});

/// `<lake>/stage/movie_review/insert_date=D/`: what the Spark job wrote (without the partition
/// column, which lives in the directory name, as with Spark's `partitionBy`).
pub static CLASSIFIED: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![Field::new(col::CID, DataType::Utf8, true), Field::new(col::POSITIVE_REVIEW, DataType::Boolean, false)]))
});

/// `retail.user_purchase`, the original DDL in Arrow types. Money stays decimal.
pub static USER_PURCHASE: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("invoice_number", DataType::Utf8, true),
        Field::new("stock_code", DataType::Utf8, true),
        Field::new("detail", DataType::Utf8, true),
        Field::new(col::QUANTITY, DataType::Int32, true),
        Field::new(col::INVOICE_DATE, DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new(col::UNIT_PRICE, DataType::Decimal128(UNIT_PRICE.0, UNIT_PRICE.1), true),
        Field::new(col::CUSTOMER_ID, DataType::Int32, true),
        Field::new("country", DataType::Utf8, true),
    ]))
});

/// `public.user_behavior_metric`, the original DDL in Arrow types.
pub static USER_BEHAVIOR_METRIC: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(col::CUSTOMERID, DataType::Int32, true),
        Field::new(col::AMOUNT_SPENT, DataType::Decimal128(AMOUNT_SPENT.0, AMOUNT_SPENT.1), true),
        Field::new(col::REVIEW_SCORE, DataType::Int32, true),
        Field::new(col::REVIEW_COUNT, DataType::Int32, true),
        Field::new(col::INSERT_DATE, DataType::Date32, true),
    ]))
});

/// Rows per Parquet row group of every file ubm writes: the writer holds one encoded row group
/// in memory, so with Parquet's default of 1 Mi rows a staged purchases file alone held ~100 MB
/// at SF 16. 122,880 is DuckDB's size.
pub const ROW_GROUP_ROWS: usize = 122_880;

/// The settings of every Parquet file ubm writes: snappy, row groups of [`ROW_GROUP_ROWS`].
pub fn parquet_properties() -> WriterProperties {
    WriterProperties::builder().set_compression(Compression::SNAPPY).set_max_row_group_row_count(Some(ROW_GROUP_ROWS)).build()
}
