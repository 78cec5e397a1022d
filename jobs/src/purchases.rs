//! Rows of `retail.user_purchase` as ubm stages them: the Arrow batch builder both extracts
//! (Postgres slices and the embedded database) fill, and the contract's check of `unit_price`.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Decimal128Builder, Int32Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder};
use datafusion::arrow::error::ArrowError;
use rust_decimal::Decimal;

use crate::schema::{UNIT_PRICE, USER_PURCHASE};

/// Rows per Arrow batch of an extract.
pub const BATCH_ROWS: usize = 64 * 1024;

/// Arrow builders for [`USER_PURCHASE`], filled a row at a time.
pub struct PurchaseBatch {
    pub invoice_number: StringBuilder,
    pub stock_code: StringBuilder,
    pub detail: StringBuilder,
    pub quantity: Int32Builder,
    pub invoice_date: TimestampMicrosecondBuilder,
    pub unit_price: Decimal128Builder,
    pub customer_id: Int32Builder,
    pub country: StringBuilder,
    rows: usize,
}

impl Default for PurchaseBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl PurchaseBatch {
    pub fn new() -> Self {
        Self {
            invoice_number: StringBuilder::new(),
            stock_code: StringBuilder::new(),
            detail: StringBuilder::new(),
            quantity: Int32Builder::new(),
            invoice_date: TimestampMicrosecondBuilder::new(),
            unit_price: Decimal128Builder::new(),
            customer_id: Int32Builder::new(),
            country: StringBuilder::new(),
            rows: 0,
        }
    }

    fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.invoice_number.finish()),
            Arc::new(self.stock_code.finish()),
            Arc::new(self.detail.finish()),
            Arc::new(self.quantity.finish()),
            Arc::new(self.invoice_date.finish()),
            Arc::new(self.unit_price.finish().with_precision_and_scale(UNIT_PRICE.0, UNIT_PRICE.1)?),
            Arc::new(self.customer_id.finish()),
            Arc::new(self.country.finish()),
        ];
        RecordBatch::try_new(USER_PURCHASE.clone(), columns)
    }

    /// Counts the row just appended; returns a full batch when it is time to send one.
    pub fn row_done(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        self.rows += 1;
        if self.rows >= BATCH_ROWS { self.finish().map(Some) } else { Ok(None) }
    }

    /// The last, partial batch (an empty one when there were no rows at all, so that the
    /// consumer still learns the schema).
    pub fn last(mut self, sent_any: bool) -> Result<Option<RecordBatch>, ArrowError> {
        if self.rows > 0 || !sent_any { self.finish().map(Some) } else { Ok(None) }
    }
}

/// Why a `unit_price` does not fit the contract's `numeric(8,3)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PriceError {
    /// More decimal places than the scale (3).
    #[error("{price} has more than {scale} decimal places, which numeric(8,3) cannot hold", scale = UNIT_PRICE.1)]
    Scale { price: Decimal },
    /// More digits before the decimal point than precision minus scale (5).
    #[error("{price} has more than {digits} digits before the decimal point, which numeric(8,3) cannot hold", digits = UNIT_PRICE.0 as i8 - UNIT_PRICE.1)]
    Precision { price: Decimal },
}

/// `unit_price` as the integer of thousandths Arrow's `Decimal128(8,3)` stores, or why it does
/// not fit `numeric(8,3)`: at most 3 decimal places and 5 digits before the point. A wider
/// value is refused, never rounded or wrapped (Parquet keeps a precision-8 decimal in 32 bits).
pub fn price_thousandths(price: Decimal) -> Result<i128, PriceError> {
    let mut scaled = price;
    scaled.rescale(UNIT_PRICE.1 as u32);
    if scaled != price {
        return Err(PriceError::Scale { price });
    }
    let limit = 10i128.pow(u32::from(UNIT_PRICE.0));
    if scaled.mantissa().abs() >= limit {
        return Err(PriceError::Precision { price });
    }
    Ok(scaled.mantissa())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(text: &str) -> Result<i128, PriceError> {
        price_thousandths(text.parse().expect("a decimal"))
    }

    #[test]
    fn prices_that_fit_numeric_8_3_are_kept_exactly_and_wider_ones_are_refused() {
        assert_eq!(price("2.55"), Ok(2550));
        assert_eq!(price("-11062.060"), Ok(-11_062_060));
        assert_eq!(price("99999.999"), Ok(99_999_999));
        assert_eq!(price("-99999.999"), Ok(-99_999_999));
        assert!(matches!(price("123456.789"), Err(PriceError::Precision { .. })));
        assert!(matches!(price("3000000.000"), Err(PriceError::Precision { .. })));
        assert!(matches!(price("-100000"), Err(PriceError::Precision { .. })));
        assert!(matches!(price("1.0005"), Err(PriceError::Scale { .. })));
        let said = price("3000000.000").expect_err("refused").to_string();
        assert!(said.contains("3000000.000") && said.contains("5 digits before the decimal point"), "{said}");
    }
}
