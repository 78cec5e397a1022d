//! "Spark-compatible", measured: the original PySpark classifier and ubm's plan classify the
//! same files, and the outputs are equal row by row, in file order.

use std::path::Path;
use std::process::Command;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, UInt64Type};
use futures::TryStreamExt;
use ubm_cluster::{Engine, EngineKind};

use crate::common::{Sample, peer_python, peer_script, text};

/// Edge cases of classifier.md and more, as (cid field, review_str field) written exactly as
/// they stand in the file (quoting included).
const EDGE_CASES: &[(&str, &str)] = &[
    ("1", "This movie was good"),
    ("2", "GOOD movie"),
    ("3", "GoOd"),
    ("4", "\"good.\""),
    ("5", "\"not good, really\""),
    ("6", "a\tgood\tone"),
    ("7", "\"so good\nreally\""),
    ("8", "\u{b}good\u{c}"),
    ("9", "\"good\r\""),
    ("10", "very\u{a0}good"),
    ("11", "good\u{3000}thing"),
    ("12", "good\u{85}"),
    ("13", "good\u{2028}next"),
    ("14", "good\u{1f}"),
    ("15", "goodness gracious"),
    ("16", "  good  "),
    ("17", "<br />good<br />"),
    ("18", "the good the bad"),
    ("19", "\"\"\"quoted\"\" good\""),
    ("20", "\"\"\"good\"\"\""),
    ("21", "\"good,good\""),
    ("22", "\"a\r\ngood\""),
    ("23", "\"\""),
    ("24", ""),
    (" 25 ", "good"),
    ("", "good"),
    ("\"\"", "good movie"),
    ("abc", "Good"),
    ("x123", "GOOD!"),
    ("12.0", "good"),
    ("26", "İstanbul good"),
    ("27", "ǴOOD"),
    ("28", "ｇｏｏｄ"),
    ("29", "\u{212a}good"),
    ("30", "caf\u{e9} good\u{b}"),
    ("31", "Σ good σ"),
    ("32", "\"he said \"\"good\"\"\""),
    ("33", "good\"inside"),
    ("34", "\"multi\n\nline\n good \nend\""),
];

fn write_edge_corpus(path: &Path) {
    let mut file = String::from("cid,review_str,id_review\n");
    for (i, (cid, review)) in EDGE_CASES.iter().enumerate() {
        file.push_str(&format!("{cid},{review},{i}\n"));
    }
    std::fs::write(path, file).expect("write corpus");
}

/// ubm's classification of `csv`, in file order: (cid, positive_review) per record.
async fn ubm_classify_in_file_order(csv: &Path) -> Vec<(Option<String>, bool)> {
    let engine = Engine::start(EngineKind::Local).await.expect("engine");
    let url = ubm_cluster::store::location_url(&csv.display().to_string()).expect("url");
    let plan = ubm_jobs::classify_reviews(engine.review_records(&url, "ubm classify spark_compat").await.expect("scan")).expect("plan");
    let batches: Vec<RecordBatch> = engine.execute(plan, "spark compat").await.expect("run").try_collect().await.expect("batches");
    let all = concat_batches(&batches[0].schema(), &batches).expect("concat");
    assert_eq!(all.column_by_name("reject_reason").expect("col").null_count(), all.num_rows(), "no rejects expected");
    let lines = all.column_by_name("line").expect("line");
    let cids = cast(all.column_by_name("cid").expect("cid"), &DataType::Utf8).expect("cast");
    let positive = all.column_by_name("positive_review").expect("positive");
    let (lines, cids, positive) = (lines.as_primitive::<UInt64Type>(), cids.as_string::<i32>(), positive.as_boolean());
    let mut rows: Vec<(u64, Option<String>, bool)> =
        (0..all.num_rows()).map(|i| (lines.value(i), (!cids.is_null(i)).then(|| cids.value(i).to_string()), positive.value(i))).collect();
    rows.sort_by_key(|r| r.0);
    rows.into_iter().map(|(_, cid, positive)| (cid, positive)).collect()
}

fn spark_rows(path: &Path) -> Vec<(Option<String>, bool)> {
    std::fs::read_to_string(path)
        .expect("spark output")
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("json");
            (value[0].as_str().map(str::to_string), value[1].as_bool().expect("bool"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classifier_equals_pyspark_row_by_row() {
    let Some(python) = peer_python() else { return };
    let sample = Sample::new("0.05");
    let dir = sample.dir.path();
    let edge_csv = dir.join("edge_reviews.csv");
    write_edge_corpus(&edge_csv);
    let generated_csv = dir.join("movie_review.csv");
    let (edge_out, generated_out) = (dir.join("spark_edge.jsonl"), dir.join("spark_generated.jsonl"));

    let spark = Command::new(python)
        .arg(peer_script("spark_classify.py"))
        .args([&edge_csv, &edge_out, &generated_csv, &generated_out])
        .output()
        .expect("python runs");
    assert!(spark.status.success(), "PySpark failed:\n{}", text(&spark.stderr));

    for (csv, out) in [(&edge_csv, &edge_out), (&generated_csv, &generated_out)] {
        let theirs = spark_rows(out);
        let ours = ubm_classify_in_file_order(csv).await;
        assert!(theirs.len() > 30, "{}: Spark produced only {} rows", csv.display(), theirs.len());
        assert_eq!(ours.len(), theirs.len(), "{}: row counts differ", csv.display());
        let positives = ours.iter().filter(|r| r.1).count();
        assert!(positives > 0 && positives < ours.len(), "a corpus must have both classes");
        for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
            assert_eq!(o, t, "{} record {}: ubm {o:?} vs Spark {t:?}", csv.display(), i + 1);
        }
        eprintln!("{}: {} rows equal to PySpark 4.3.0 ({} positive)", csv.display(), ours.len(), positives);
    }
}
