//! The run date `D`: the partition every task of a run reads and writes.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};

/// A calendar date written exactly as `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunDate(NaiveDate);

/// Why a text is not a run date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a run date: {reason}")]
pub struct InvalidRunDate {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The first and last dates every stage can run: the as-of bound `D + 1 day` must be a date
/// too, and Postgres has no year 0.
pub const FIRST_DATE: &str = "1900-01-01";
pub const LAST_DATE: &str = "9999-12-30";

impl FromStr for RunDate {
    type Err = InvalidRunDate;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidRunDate { text: text.to_string(), reason: "write it as YYYY-MM-DD, a real calendar date (e.g. 2024-01-31)" };
        let b = text.as_bytes();
        let shape_ok = b.len() == 10 && b[4] == b'-' && b[7] == b'-' && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
        if !shape_ok {
            return Err(invalid());
        }
        let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| invalid())?;
        // Same shape, so comparing the text compares the dates.
        if !(FIRST_DATE..=LAST_DATE).contains(&text) {
            return Err(InvalidRunDate { text: text.to_string(), reason: "ubm runs dates from 1900-01-01 to 9999-12-30 (YYYY-MM-DD)" });
        }
        Ok(RunDate(date))
    }
}

impl fmt::Display for RunDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

impl RunDate {
    pub fn new(date: NaiveDate) -> Self {
        RunDate(date)
    }

    pub fn naive(&self) -> NaiveDate {
        self.0
    }

    /// Days since 1970-01-01, Arrow's `Date32`.
    pub fn days_since_epoch(&self) -> i32 {
        self.0.num_days_from_ce() - NaiveDate::from_ymd_opt(1970, 1, 1).map_or(719_163, |d| d.num_days_from_ce())
    }

    /// The next day: the as-of bound of the purchases snapshot (`invoice_date < D + 1 day`).
    pub fn next_day(&self) -> RunDate {
        RunDate(self.0.succ_opt().unwrap_or(self.0))
    }

    /// Every date from `self` to `last`, both included.
    pub fn through(self, last: RunDate) -> Vec<RunDate> {
        self.0.iter_days().take_while(|d| *d <= last.0).map(RunDate).collect()
    }

    /// `insert_date=D`, the Hive-style partition directory name.
    pub fn partition(&self) -> String {
        format!("insert_date={self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_dates_in_the_exact_shape() {
        assert_eq!("2024-02-29".parse::<RunDate>().map(|d| d.to_string()), Ok("2024-02-29".into()));
        for bad in [
            "2024-13-01",
            "2023-02-29",
            "2024-1-1",
            "2024-01-01; drop table x",
            "",
            "20240101",
            "2024-01-01 ",
            "9999-12-31",
            "0000-01-01",
            "1899-12-31",
        ] {
            assert!(bad.parse::<RunDate>().is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn epoch_days_and_ranges() {
        let d: RunDate = "1970-01-02".parse().expect("date");
        assert_eq!(d.days_since_epoch(), 1);
        let from: RunDate = "2024-02-28".parse().expect("date");
        let to: RunDate = "2024-03-01".parse().expect("date");
        assert_eq!(from.through(to).len(), 3);
        assert_eq!(from.next_day().to_string(), "2024-02-29");
    }
}
