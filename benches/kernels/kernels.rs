//! Micro-benchmarks of the hot kernels, so that a change to one shows its effect alone:
//! - `classify`: Spark's rule (`good` among the `\s`-separated, lower-cased tokens) per byte of
//!   review text;
//! - `csv/record_spans`: cutting a review file into records (quoted line breaks included);
//! - `csv/parse_record`: splitting every record into fields.
//!
//! Run: `cargo bench --manifest-path benches/kernels/Cargo.toml` (add a filter such as
//! `classify` to run one). The input is made here, deterministically, to look like the vendor's
//! file: about 1 KB of IMDB-like text a review, `<br />`, quotes, commas, some line breaks inside
//! quotes, and `good` in some reviews (in all cases) and `goods`/`goodness` in others.

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ubm_kernel_benches::csv::{parse_record, record_spans};
use ubm_kernel_benches::spark::Needle;

const REVIEWS: usize = 2_000;

const WORDS: &[&str] = &[
    "the", "movie", "was", "a", "film", "acting", "plot", "director", "scene", "character", "story", "really",
    "not", "bad", "great", "boring", "slow", "and", "of", "to", "in", "it", "is", "that", "this", "with",
    "goods", "goodness", "\"quoted\"", "end.", "however,", "<br", "/><br", "/>the", "(1999)", "10/10",
];

/// A review of about 1 KB from a small linear congruential generator (fixed seed).
fn review(n: usize, state: &mut u64) -> String {
    let mut text = String::with_capacity(1100);
    let mut next = || {
        *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (*state >> 33) as usize
    };
    while text.len() < 1000 {
        let word = WORDS[next() % WORDS.len()];
        text.push_str(word);
        text.push(if next() % 40 == 0 { '\n' } else { ' ' });
    }
    if n % 3 == 0 {
        text.push_str(["good", "GOOD", "Good"][n % 9 / 3]);
    }
    text
}

fn reviews() -> Vec<String> {
    let mut state = 42;
    (0..REVIEWS).map(|n| review(n, &mut state)).collect()
}

/// The reviews as a vendor file: `cid,review_str,id_review`, quotes doubled, RFC 4180.
fn review_file(reviews: &[String]) -> Vec<u8> {
    let mut file = b"cid,review_str,id_review\n".to_vec();
    for (n, text) in reviews.iter().enumerate() {
        file.extend_from_slice(format!("{},\"{}\",{n}\n", 12346 + n % 4000, text.replace('"', "\"\"")).as_bytes());
    }
    file
}

fn classify(c: &mut Criterion) {
    let reviews = reviews();
    let bytes: usize = reviews.iter().map(String::len).sum();
    let good = Needle::new("good");
    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("good_among_tokens", |b| {
        b.iter(|| reviews.iter().filter(|text| good.is_in(black_box(text))).count())
    });
    group.finish();
}

fn csv_scan(c: &mut Criterion) {
    let file = review_file(&reviews());
    let spans = record_spans(&file);
    let mut group = c.benchmark_group("csv");
    group.throughput(Throughput::Bytes(file.len() as u64));
    group.bench_function("record_spans", |b| b.iter(|| record_spans(black_box(&file)).len()));
    group.bench_function("parse_record", |b| {
        let mut fields: Vec<Option<Cow<'_, str>>> = Vec::new();
        b.iter(|| {
            let mut parsed = 0;
            for span in &spans[1..] {
                if parse_record(black_box(&file), span, &mut fields).is_ok() {
                    parsed += fields.len();
                }
            }
            parsed
        })
    });
    group.finish();
}

criterion_group!(kernels, classify, csv_scan);
criterion_main!(kernels);
