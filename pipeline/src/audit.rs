//! The checks a day passes before it is published (write, audit, publish).
//!
//! A run stages the day's table, then audits what it staged: the share of the vendor's records
//! that could not be read, how far the day's reviews and purchases moved from the last complete
//! day, the share of reviews that matched no customer, an empty table, and whether the review
//! counts reconcile. Each check has a severity: `error` holds the day (nothing of it is
//! published; the staged table is kept for inspection until `ubm publish` accepts it or a rerun
//! replaces it), `warn` publishes with the warning in the run report, `off` skips it.
//!
//! The defaults are what a team reading the table every morning would pick: a day is held when
//! a tenth of its reviews are unreadable, when it has no purchases or no rows at all, or when its
//! counts do not add up; it is published with a warning when its reviews or purchases moved by
//! more than half from the last complete day, or when more than nine in ten of its reviews match
//! no customer (most reviewers buy nothing, in the vendor's data as in the sample's two in three;
//! nearly none matching says the cid column or the purchases are wrong). A vendor file that
//! shrank or a sales drop can be real; garbage cannot. Each can
//! be changed with `--check NAME=SEVERITY[:BOUND]`: a flag, like every other setting of a run,
//! rather than a file, so that what a run was told is in its command line and its report.

use crate::error::{PipelineError, Result};
use crate::run_report::Counts;
pub use crate::run_report::{CheckOutcome, Severity};

/// The checks, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckName {
    /// Share of the review file's records that could not be read, above the bound.
    Rejects,
    /// Review records read vs the last complete day: relative change above the bound.
    ReviewsChange,
    /// No purchase extracted.
    PurchasesZero,
    /// Purchases extracted vs the last complete day: relative change above the bound.
    PurchasesChange,
    /// Share of classified reviews that matched no customer, above the bound.
    NoCustomer,
    /// The day's table has no row.
    MetricRowsZero,
    /// Review records read ≠ classified + rejected.
    Reconcile,
}

/// Every check with its default severity and bound, in the order reports list them.
pub const CHECKS: [(CheckName, &str, Severity, f64); 7] = [
    (CheckName::Rejects, "rejects", Severity::Error, 0.10),
    (CheckName::ReviewsChange, "reviews_change", Severity::Warn, 0.50),
    (CheckName::PurchasesZero, "purchases_zero", Severity::Error, 0.0),
    (CheckName::PurchasesChange, "purchases_change", Severity::Warn, 0.50),
    (CheckName::NoCustomer, "no_customer", Severity::Warn, 0.90),
    (CheckName::MetricRowsZero, "metric_rows_zero", Severity::Error, 0.0),
    (CheckName::Reconcile, "reconcile", Severity::Error, 0.0),
];

/// One check as configured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckRule {
    pub check: CheckName,
    pub name: &'static str,
    pub severity: Severity,
    /// The share (0 to 1) beyond which the check fails; unused by the checks of a zero or a sum.
    pub bound: f64,
}

/// The checks of a run: the defaults, with what `--check` changed.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditPolicy {
    pub rules: Vec<CheckRule>,
}

impl Default for AuditPolicy {
    fn default() -> Self {
        AuditPolicy { rules: CHECKS.iter().map(|&(check, name, severity, bound)| CheckRule { check, name, severity, bound }).collect() }
    }
}

impl AuditPolicy {
    /// The defaults changed by `settings`, each `NAME=SEVERITY[:BOUND]` (`rejects=warn`,
    /// `reviews_change=error:0.3`).
    pub fn with(settings: &[String]) -> Result<AuditPolicy> {
        let mut policy = AuditPolicy::default();
        for setting in settings {
            let bad = |reason: String| PipelineError::BadInput { what: format!("--check {setting}"), reason };
            let (name, value) = setting.split_once('=').ok_or_else(|| bad("expected NAME=SEVERITY[:BOUND], e.g. rejects=warn".into()))?;
            let names = || CHECKS.iter().map(|c| c.1).collect::<Vec<_>>().join(", ");
            let rule =
                policy.rules.iter_mut().find(|r| r.name == name).ok_or_else(|| bad(format!("no check `{name}`; the checks are {}", names())))?;
            let (severity, bound) = value.split_once(':').map_or((value, None), |(s, b)| (s, Some(b)));
            rule.severity = match severity {
                "off" => Severity::Off,
                "warn" => Severity::Warn,
                "error" => Severity::Error,
                other => return Err(bad(format!("severity `{other}`: use off, warn or error"))),
            };
            if let Some(bound) = bound {
                let share: f64 = bound.parse().map_err(|_| bad(format!("bound `{bound}`: give a share such as 0.1 (10%)")))?;
                if !(0.0..=100.0).contains(&share)
                    || matches!(rule.check, CheckName::PurchasesZero | CheckName::MetricRowsZero | CheckName::Reconcile)
                {
                    return Err(bad(format!(
                        "bound `{bound}`: {name} takes a share from 0 up (0.1 is 10%), and only the share and change checks take one"
                    )));
                }
                rule.bound = share;
            }
        }
        Ok(policy)
    }
}

/// What a day is audited on: its counts, the last complete day's (if any) and where its
/// purchases came from (the table and the database, password hidden), which the purchase
/// checks name.
#[derive(Debug, Clone, Copy)]
pub struct DayFacts<'a> {
    pub counts: &'a Counts,
    pub previous: Option<(&'a str, &'a Counts)>,
    pub purchases_source: &'a str,
}

/// The checks of `policy` on a day's `facts`.
pub fn audit(policy: &AuditPolicy, facts: DayFacts<'_>) -> Vec<CheckOutcome> {
    policy.rules.iter().filter(|rule| rule.severity != Severity::Off).map(|rule| check(rule, facts)).collect()
}

fn check(rule: &CheckRule, facts: DayFacts<'_>) -> CheckOutcome {
    let (counts, previous) = (facts.counts, facts.previous);
    let outcome = |passed: bool, detail: String| CheckOutcome { name: rule.name.to_string(), severity: rule.severity, passed, detail };
    let percent = |share: f64| format!("{:.1}%", share * 100.0);
    match rule.check {
        CheckName::Rejects => {
            let share = ratio(counts.reviews_rejected, counts.review_records_read);
            outcome(
                share <= rule.bound,
                format!(
                    "{} of {} review records rejected ({}); bound {}",
                    counts.reviews_rejected,
                    counts.review_records_read,
                    percent(share),
                    percent(rule.bound)
                ),
            )
        }
        CheckName::NoCustomer => {
            let unmatched = counts.reviews_without_customer + counts.reviews_invalid_cid;
            let share = ratio(unmatched, counts.reviews_classified);
            outcome(
                share <= rule.bound,
                format!(
                    "{unmatched} of {} classified reviews match no customer ({}); bound {}",
                    counts.reviews_classified,
                    percent(share),
                    percent(rule.bound)
                ),
            )
        }
        CheckName::ReviewsChange => {
            change(rule, "review records read", counts.review_records_read, previous.map(|(d, c)| (d, c.review_records_read)))
        }
        CheckName::PurchasesChange => {
            change(rule, "purchases extracted", counts.purchase_rows_extracted, previous.map(|(d, c)| (d, c.purchase_rows_extracted)))
        }
        CheckName::PurchasesZero => outcome(
            counts.purchase_rows_extracted > 0,
            format!(
                "{} purchase rows extracted from {} (an empty table, or a user that may not read it?)",
                counts.purchase_rows_extracted, facts.purchases_source
            ),
        ),
        CheckName::MetricRowsZero => outcome(counts.metric_rows_written > 0, format!("{} rows in the day's table", counts.metric_rows_written)),
        CheckName::Reconcile => outcome(
            counts.reconcile(),
            format!(
                "{} review records read, {} classified + {} rejected",
                counts.review_records_read, counts.reviews_classified, counts.reviews_rejected
            ),
        ),
    }
}

/// A relative change of `now` against the last complete day's `before`, failing beyond the
/// rule's bound; passes when there is no complete day before.
fn change(rule: &CheckRule, what: &str, now: u64, before: Option<(&str, u64)>) -> CheckOutcome {
    let outcome = |passed: bool, detail: String| CheckOutcome { name: rule.name.to_string(), severity: rule.severity, passed, detail };
    let Some((date, before)) = before else {
        return outcome(true, format!("{now} {what}; no complete day before to compare with"));
    };
    if before == 0 {
        return outcome(true, format!("{now} {what}; {date}, the last complete day, had none"));
    }
    let moved = (now as f64 - before as f64) / before as f64;
    outcome(
        moved.abs() <= rule.bound,
        format!("{now} {what}, {:+.1}% from {before} on {date}, the last complete day; bound ±{:.1}%", moved * 100.0, rule.bound * 100.0),
    )
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(read: u64, rejected: u64, purchases: u64) -> Counts {
        Counts {
            review_records_read: read,
            reviews_classified: read - rejected,
            reviews_rejected: rejected,
            purchase_rows_extracted: purchases,
            metric_rows_written: purchases / 10,
            ..Counts::default()
        }
    }

    fn facts<'a>(counts: &'a Counts, previous: Option<(&'a str, &'a Counts)>) -> DayFacts<'a> {
        DayFacts { counts, previous, purchases_source: "retail.user_purchase in postgres://etl:***@db/shop" }
    }

    fn failed(outcomes: &[CheckOutcome]) -> Vec<(&str, Severity)> {
        outcomes.iter().filter(|o| !o.passed).map(|o| (o.name.as_str(), o.severity)).collect()
    }

    #[test]
    fn the_defaults_hold_garbage_and_warn_of_a_change() {
        let policy = AuditPolicy::default();
        assert!(failed(&audit(&policy, facts(&day(1000, 10, 500), None))).is_empty());
        let outcomes = audit(&policy, facts(&day(1000, 300, 500), None));
        assert_eq!(failed(&outcomes), [("rejects", Severity::Error)]);
        assert!(outcomes[0].holds() && outcomes[0].detail.contains("300 of 1000 review records rejected (30.0%); bound 10.0%"), "{outcomes:?}");
        let outcomes = audit(&policy, facts(&day(1000, 0, 0), None));
        assert_eq!(failed(&outcomes), [("purchases_zero", Severity::Error), ("metric_rows_zero", Severity::Error)]);
        let previous = day(400, 0, 500);
        let outcomes = audit(&policy, facts(&day(1000, 0, 500), Some(("2011-12-08", &previous))));
        assert_eq!(failed(&outcomes), [("reviews_change", Severity::Warn)]);
        assert!(outcomes.iter().any(|o| o.warns() && o.detail.contains("+150.0% from 400 on 2011-12-08")), "{outcomes:?}");
    }

    #[test]
    fn a_check_is_changed_by_name_and_a_bad_setting_is_named() {
        let policy = AuditPolicy::with(&["rejects=warn:0.4".into(), "no_customer=off".into()]).expect("valid");
        assert_eq!(failed(&audit(&policy, facts(&day(1000, 300, 500), None))), Vec::<(&str, Severity)>::new());
        assert_eq!(failed(&audit(&policy, facts(&day(1000, 500, 500), None))), [("rejects", Severity::Warn)]);
        assert!(!audit(&policy, facts(&day(10, 0, 5), None)).iter().any(|o| o.name == "no_customer"));
        for (setting, says) in [
            ("reject=warn", "no check `reject`"),
            ("rejects", "NAME=SEVERITY"),
            ("rejects=loud", "off, warn or error"),
            ("rejects=warn:ten", "give a share"),
            ("reconcile=error:0.1", "only the share and change checks"),
        ] {
            let err = AuditPolicy::with(&[setting.to_string()]).expect_err(setting).to_string();
            assert!(err.contains(says) && err.contains(setting), "{setting}: {err}");
        }
    }
}
