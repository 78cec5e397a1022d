//! Deterministic sample data modelled on the real sources of the data contract (`docs/pipeline.md`).
//!
//! Scale factor 1 is 541,909 purchase lines (the UCI "Online Retail" set's size) and 100,000
//! reviews of about 1 KB (IMDB-like). The mess is the real sets' mess: descriptions with commas
//! and quotes, a quarter of lines without customer, cancellations (`C` invoices, negative
//! quantities), reviews with `<br />`, quotes, commas, tabs, quoted line breaks, CRLF inside
//! quotes, non-ASCII text, a few null reviews, and cids that are not integers. The same seed
//! and scale always give the same bytes.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{PipelineError, Result};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Purchase lines at scale factor 1.
pub const PURCHASES_AT_SF1: f64 = 541_909.0;
/// Reviews at scale factor 1.
pub const REVIEWS_AT_SF1: f64 = 100_000.0;
/// Customer ids of the real set.
const CUSTOMER_IDS: std::ops::RangeInclusive<i32> = 12346..=18287;
/// Customers who bought something, as in the real set.
const CUSTOMERS: usize = 4372;

/// What to generate.
#[derive(Debug, Clone)]
pub struct DatagenConfig {
    /// 1.0 is the real sets' size; 0.1 for a quick run.
    pub scale: f64,
    /// Same seed, same bytes.
    pub seed: u64,
    /// Directory for `movie_review.csv` and `user_purchase.csv`.
    pub out: PathBuf,
}

/// What was generated.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Generated {
    pub reviews_csv: PathBuf,
    pub purchases_csv: PathBuf,
    pub reviews: u64,
    pub purchases: u64,
}

/// Writes both files.
pub fn generate(config: &DatagenConfig) -> Result<Generated> {
    std::fs::create_dir_all(&config.out).map_err(PipelineError::io("creating", &config.out))?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut ids: Vec<i32> = CUSTOMER_IDS.collect();
    ids.shuffle(&mut rng);
    let (buyers, others) = ids.split_at(CUSTOMERS);
    let purchases = (PURCHASES_AT_SF1 * config.scale).round() as u64;
    let reviews = (REVIEWS_AT_SF1 * config.scale).round() as u64;
    let purchases_csv = config.out.join("user_purchase.csv");
    let reviews_csv = config.out.join("movie_review.csv");
    write_purchases(&purchases_csv, purchases, buyers, &mut ChaCha8Rng::seed_from_u64(rng.random()))
        .map_err(PipelineError::io("writing", &purchases_csv))?;
    write_reviews(&reviews_csv, reviews, buyers, others, &mut ChaCha8Rng::seed_from_u64(rng.random()))
        .map_err(PipelineError::io("writing", &reviews_csv))?;
    Ok(Generated { reviews_csv, purchases_csv, reviews, purchases })
}

fn create(path: &Path) -> std::io::Result<std::io::BufWriter<std::fs::File>> {
    let file = std::fs::File::create(path)?;
    Ok(std::io::BufWriter::with_capacity(1 << 20, file))
}

/// RFC 4180: quote when the field holds a comma, a quote or a line break; double the quotes.
fn csv_field(out: &mut String, value: &str, always_quote: bool) {
    if always_quote || value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

struct Product {
    stock_code: String,
    detail: String,
    /// Price in thousandths, so it is exact.
    price_milli: i64,
}

const ADJECTIVES: &[&str] = &[
    "RED",
    "WHITE",
    "VINTAGE",
    "REGENCY",
    "PINK",
    "BLUE",
    "GREEN",
    "JUMBO",
    "SMALL",
    "LARGE",
    "HANGING",
    "HEART",
    "GLASS",
    "WOODEN",
    "PAPER",
    "RETROSPOT",
    "PARTY",
    "CHRISTMAS",
    "SPACEBOY",
    "ENAMEL",
];
const NOUNS: &[&str] = &[
    "LANTERN",
    "MUG",
    "BAG",
    "TIN",
    "CAKESTAND",
    "BUNTING",
    "CANDLE",
    "HOLDER",
    "NAPKINS",
    "BOTTLE",
    "CLOCK",
    "SIGN",
    "DOORMAT",
    "TEA SET",
    "LUNCH BOX",
    "PHOTO FRAME",
    "CUSHION COVER",
    "CHALKBOARD",
];
const COUNTRIES: &[(&str, u32)] = &[
    ("United Kingdom", 900),
    ("Germany", 20),
    ("France", 18),
    ("EIRE", 15),
    ("Spain", 6),
    ("Netherlands", 5),
    ("Belgium", 4),
    ("Switzerland", 4),
    ("Portugal", 3),
    ("Australia", 3),
];

fn products(rng: &mut ChaCha8Rng) -> Vec<Product> {
    (0..3900)
        .map(|i| {
            let mut detail = format!("{} {}", ADJECTIVES.choose(rng).unwrap_or(&"RED"), NOUNS.choose(rng).unwrap_or(&"MUG"));
            match rng.random_range(0..20) {
                0 => detail = format!("SET OF {} \"{detail}\" ASSORTED", rng.random_range(2..12)),
                1 => detail = format!("{detail}, {}", ADJECTIVES.choose(rng).unwrap_or(&"RED")),
                2 => detail = format!("{detail} 12\" x 8\""),
                _ => {}
            }
            let suffix = if rng.random_bool(0.3) { ["A", "B", "C", "L", "S"][i % 5] } else { "" };
            let price_milli = match rng.random_range(0..10) {
                0 => rng.random_range(40..400) * 5, // fractions of a penny, as in the real set
                1..=6 => rng.random_range(29..500) * 10,
                _ => rng.random_range(500..3000) * 10,
            };
            Product { stock_code: format!("{}{suffix}", 20000 + i), detail, price_milli }
        })
        .collect()
}

fn write_purchases(path: &Path, lines: u64, buyers: &[i32], rng: &mut ChaCha8Rng) -> std::io::Result<()> {
    let mut out = create(path)?;
    let catalogue = products(rng);
    let start = chrono::NaiveDate::from_ymd_opt(2010, 12, 1)
        .and_then(|d| d.and_hms_opt(8, 26, 0))
        .ok_or_else(|| std::io::Error::other("the first invoice date"))?;
    let span_minutes = 373 * 24 * 60; // through 2011-12-09, as the real set
    let mut row = String::with_capacity(256);
    writeln!(out, "invoice_number,stock_code,detail,quantity,invoice_date,unit_price,customer_id,country")?;
    let (mut written, mut invoice) = (0u64, 536_365u64);
    while written < lines {
        let cancelled = rng.random_bool(0.02);
        let customer = if rng.random_bool(0.25) { None } else { buyers.choose(rng).copied() };
        let country = weighted(rng, COUNTRIES);
        let at = start + chrono::Duration::minutes((span_minutes as f64 * written as f64 / lines as f64) as i64);
        let invoice_no = if cancelled { format!("C{invoice}") } else { invoice.to_string() };
        for _ in 0..rng.random_range(1..=40u64).min(lines - written) {
            let product = catalogue.choose(rng).ok_or_else(|| std::io::Error::other("an empty product catalogue"))?;
            let quantity = rng.random_range(1..=24) * if cancelled { -1 } else { 1 };
            row.clear();
            let _ = write!(row, "{invoice_no},{},", product.stock_code);
            csv_field(&mut row, &product.detail, false);
            let customer = customer.map(|c| c.to_string()).unwrap_or_default();
            let price = format!("{}.{:03}", product.price_milli / 1000, product.price_milli % 1000);
            let _ = writeln!(row, ",{quantity},{},{price},{customer},{country}", at.format("%Y-%m-%d %H:%M:%S"));
            out.write_all(row.as_bytes())?;
            written += 1;
        }
        invoice += 1;
    }
    out.flush()?;
    Ok(())
}

fn weighted<'a>(rng: &mut ChaCha8Rng, choices: &'a [(&'a str, u32)]) -> &'a str {
    let total: u32 = choices.iter().map(|c| c.1).sum();
    let mut pick = rng.random_range(0..total);
    for (value, weight) in choices {
        if pick < *weight {
            return value;
        }
        pick -= weight;
    }
    choices[0].0
}

const WORDS: &[&str] = &[
    "the",
    "movie",
    "film",
    "was",
    "a",
    "and",
    "of",
    "to",
    "is",
    "in",
    "it",
    "that",
    "this",
    "acting",
    "plot",
    "story",
    "characters",
    "director",
    "really",
    "very",
    "bad",
    "great",
    "boring",
    "funny",
    "scene",
    "ending",
    "watch",
    "time",
    "one",
    "even",
    "would",
    "could",
    "not",
    "but",
    "just",
    "like",
    "i",
    "me",
    "my",
    "you",
    "they",
    "script",
    "music",
    "camera",
    "performance",
    "cast",
    "worst",
    "best",
];

/// How "good" shows up in a review, including the forms that Spark does not count.
const GOOD_FORMS: &[(&str, bool)] = &[
    ("good", true),
    ("Good", true),
    ("GOOD", true),
    ("good.", false),
    ("good,", false),
    ("goodness", false),
    ("\"good\"", false),
    ("<br />good", false),
    ("good!", false),
    ("\tgood\t", true),
];

const NON_ASCII: &[&str] = &["très", "über", "naïve", "café", "中文", "—", "日本語", "\u{a0}good", "good\u{3000}", "Ελληνικά"];

fn review_text(rng: &mut ChaCha8Rng, out: &mut String) {
    out.clear();
    let words = rng.random_range(120..230);
    let goods = if rng.random_bool(0.45) { rng.random_range(1..4) } else { 0 };
    let good_at: Vec<usize> = (0..goods).map(|_| rng.random_range(0..words)).collect();
    for i in 0..words {
        if i > 0 {
            out.push(' ');
        }
        if good_at.contains(&i) {
            let (form, _) = GOOD_FORMS.choose(rng).copied().unwrap_or(("good", true));
            out.push_str(form);
            continue;
        }
        match rng.random_range(0..200) {
            0..=3 => out.push_str("<br /><br />"),
            4..=7 => out.push_str("\"quoted\""),
            8..=15 => out.push(','),
            16 => out.push_str(NON_ASCII.choose(rng).unwrap_or(&"café")),
            17 => out.push('\t'),
            _ => out.push_str(WORDS.choose(rng).unwrap_or(&"movie")),
        }
    }
    match rng.random_range(0..100) {
        0..=1 => out.push_str("\nSecond paragraph after a line break."),
        2 => out.push_str("\r\nA CRLF line break inside the quotes."),
        _ => out.push('.'),
    }
}

fn review_cid(rng: &mut ChaCha8Rng, buyers: &[i32], others: &[i32]) -> String {
    match rng.random_range(0..1000) {
        0..=899 => buyers.choose(rng).copied().unwrap_or(12346).to_string(),
        900..=939 => others.choose(rng).copied().unwrap_or(12346).to_string(),
        940..=949 => format!(" {} ", buyers.choose(rng).copied().unwrap_or(12346)),
        950..=959 => "abc".to_string(),
        960..=969 => format!("x{}", rng.random_range(100..999)),
        970..=979 => format!("{}.0", buyers.choose(rng).copied().unwrap_or(12346)),
        980..=989 => String::new(),
        _ => rng.random_range(20000..99999).to_string(),
    }
}

fn write_reviews(path: &Path, reviews: u64, buyers: &[i32], others: &[i32], rng: &mut ChaCha8Rng) -> std::io::Result<()> {
    let mut out = create(path)?;
    writeln!(out, "cid,review_str,id_review")?;
    let (mut text, mut row) = (String::with_capacity(2048), String::with_capacity(2048));
    for id in 0..reviews {
        row.clear();
        csv_field(&mut row, &review_cid(rng, buyers, others), false);
        row.push(',');
        if !rng.random_bool(0.0005) {
            review_text(rng, &mut text);
            csv_field(&mut row, &text, true);
        } // else: an empty unquoted field, a null review
        let _ = writeln!(row, ",{id}");
        out.write_all(row.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_and_requested_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = |sub: &str| DatagenConfig { scale: 0.002, seed: 7, out: dir.path().join(sub) };
        let a = generate(&config("a")).expect("generate");
        let b = generate(&config("b")).expect("generate");
        assert_eq!(a.purchases, 1084);
        assert_eq!(a.reviews, 200);
        for (x, y) in [(&a.reviews_csv, &b.reviews_csv), (&a.purchases_csv, &b.purchases_csv)] {
            assert_eq!(std::fs::read(x).expect("read"), std::fs::read(y).expect("read"));
        }
        let bytes = std::fs::read(&a.reviews_csv).expect("read");
        assert_eq!(ubm_jobs::csv::record_spans(&bytes).len(), 201, "header + every review, quoted line breaks included");
    }
}
