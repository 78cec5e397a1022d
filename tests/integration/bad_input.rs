//! Bad input gets a clear error or goes to rejects, and the counts reconcile.

use crate::common::{partition, text, ubm, ubm_ok};

const DATE: &str = "2024-03-01";

fn classify(csv_bytes: &[u8]) -> (tempfile::TempDir, std::process::Output) {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("movie_review.csv");
    std::fs::write(&input, csv_bytes).expect("write");
    let out_dir = dir.path().join("out").display().to_string();
    let output =
        ubm().args(["classify", "--input", &input.display().to_string(), "--date", DATE, "--output", &out_dir, "--json"]).output().expect("ubm runs");
    (dir, output)
}

#[test]
fn unreadable_records_go_to_rejects_with_line_and_reason() {
    let mut file = b"\xEF\xBB\xBFcid,review_str,id_review\r\n".to_vec();
    file.extend_from_slice(b"1,good movie,1\r\n"); // line 2
    file.extend_from_slice(b"2,too,many,fields,2\r\n"); // line 3
    file.extend_from_slice(b"3,\xff\xfe bad bytes good,3\r\n"); // line 4
    file.extend_from_slice(b"4,\"spans\r\ntwo lines, good\",4\r\n"); // lines 5-6
    file.extend_from_slice(b"5,\"closed\"early,5\r\n"); // line 7
    file.extend_from_slice(b"6\r\n"); // line 8
    file.extend_from_slice(b"7,,7\r\n"); // line 9: null review
    file.extend_from_slice(b"8,\"never closed good,8\r\n9,x,9\r\n"); // line 10 to the end
    let (dir, output) = classify(&file);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let counts: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(counts["records_read"], 8);
    assert_eq!(counts["classified"], 3);
    assert_eq!(counts["rejected"], 5);
    assert_eq!(counts["null_reviews"], 1);
    assert_eq!(counts["positive_reviews"], 2);

    let out = dir.path().join("out").display().to_string();
    let rows = crate::common::parquet_rows(&partition(&out, "", DATE));
    assert_eq!(rows, vec!["1|true", "4|true", "7|false"]);
    assert!(partition(&out, "", DATE).join("_SUCCESS").exists());

    let rejects = crate::common::rejects_text(&partition(&out, "_rejects", DATE));
    let rejects: Vec<serde_json::Value> = rejects.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let lines: Vec<u64> = rejects.iter().map(|r| r["line"].as_u64().expect("line")).collect();
    assert_eq!(lines, vec![3, 4, 7, 8, 10]);
    let reason = |i: usize| rejects[i]["reason"].as_str().expect("reason").to_string();
    assert!(reason(0).contains("expected 3 fields") && reason(0).contains("found 5"), "{}", reason(0));
    assert!(reason(1).contains("UTF-8"), "{}", reason(1));
    assert!(rejects[1]["record_base64"].is_string(), "invalid UTF-8 is kept byte for byte");
    assert!(reason(2).contains("after its closing quote"), "{}", reason(2));
    assert!(reason(3).contains("found 1"), "{}", reason(3));
    assert!(reason(4).contains("never closed"), "{}", reason(4));
    assert_eq!(rejects[0]["record"], "2,too,many,fields,2");
}

#[test]
fn an_empty_file_is_a_clear_error() {
    let (_dir, output) = classify(b"");
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("empty") && stderr.contains("movie_review.csv"), "{stderr}");
}

#[test]
fn a_header_only_file_classifies_nothing() {
    let (_dir, output) = classify(b"cid,review_str,id_review\n");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let counts: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!((counts["records_read"].as_u64(), counts["rejected"].as_u64()), (Some(0), Some(0)));
}

#[test]
fn a_missing_column_is_named() {
    let (_dir, output) = classify(b"cid,review,id_review\n1,good,1\n");
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("`review_str`") && stderr.contains("cid, review, id_review"), "{stderr}");
}

#[test]
fn bad_dates_are_refused_before_any_work() {
    for date in ["2024-13-01", "2024-01-01; drop table x", "yesterday", "9999-12-31", "0000-01-01"] {
        let output = ubm().args(["run", "--date", date, "--lake", "/nonexistent/never-created"]).output().expect("runs");
        assert_eq!(output.status.code(), Some(2), "date {date:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains("YYYY-MM-DD"), "{stderr}");
        assert!(!std::path::Path::new("/nonexistent/never-created").exists());
    }
}

#[test]
fn a_missing_review_file_fails_the_run_without_retrying() {
    let sample = crate::common::Sample::new("0.001");
    let lake = sample.lake("lake");
    let output = ubm()
        .args(["run", "--date", DATE, "--reviews", "/nonexistent/movie_review.csv", "--oltp", &sample.sqlite(), "--lake", &lake])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(text(&output.stdout).contains("does not exist"), "{}", text(&output.stdout));
    let report = crate::common::report(&lake, DATE);
    assert_eq!(report["status"], "failed");
    assert_eq!(report["tasks"][0]["name"], "ingest");
    assert_eq!(report["tasks"][0]["attempts"], 1, "an input error is not retried");
    let _ = ubm_ok(&["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &lake]);
    assert_eq!(crate::common::report(&lake, DATE)["status"], "succeeded", "the rerun with the right file succeeds");
}

/// What a run left of `date` in `lake` that a reader could see or a later run would find:
/// committed partitions of the purchases, and anything under `_staging/`.
fn staged_purchases(lake: &str) -> Vec<String> {
    let mut left = crate::common::files_under(&partition(lake, "stage/user_purchase", DATE));
    left.extend(crate::common::files_under(&std::path::Path::new(lake).join("_staging")));
    left
}

/// Prices wider than the contract's `numeric(8,3)` (too many digits before the point, or a
/// value past what the thousandths of an `i32` hold) from a Postgres column declared wider and
/// from SQLite's text: the run fails naming the row and the column, and nothing is staged.
#[test]
fn prices_wider_than_the_contract_are_refused_from_postgres_and_sqlite() {
    let sample = crate::common::Sample::new("0.001");
    let db = crate::common::TestDb::create();
    if db.is_some() {
        let url = db.as_ref().map(crate::common::TestDb::url).unwrap_or_default();
        ubm_ok(&["datagen", "--scale", "0.001", "--seed", "7", "--out", &sample.lake("pg-data"), "--oltp", &url]);
    }
    for price in ["3000000.000", "123456.789"] {
        let sqlite = sample.dir.path().join(format!("wide-{price}.sqlite"));
        std::fs::copy(sample.dir.path().join("oltp.sqlite"), &sqlite).expect("copy the database");
        let connection = rusqlite::Connection::open(&sqlite).expect("open");
        let invoice: String = connection.query_row("SELECT invoice_number FROM user_purchase LIMIT 1", [], |r| r.get(0)).expect("a row");
        connection.execute("UPDATE user_purchase SET unit_price = ?1 WHERE invoice_number = ?2", [price, invoice.as_str()]).expect("update");
        drop(connection);
        let mut sources = vec![format!("sqlite://{}", sqlite.display())];
        if let Some(db) = &db {
            db.query(&format!(
                "ALTER TABLE retail.user_purchase ALTER COLUMN unit_price TYPE numeric(12,3); \
                 UPDATE retail.user_purchase SET unit_price = 1 WHERE unit_price >= 100000; \
                 UPDATE retail.user_purchase SET unit_price = {price} WHERE ctid = (SELECT min(ctid) FROM retail.user_purchase)"
            ));
            sources.push(db.url());
        }
        for oltp in sources {
            let lake = sample.lake(&format!("lake-{price}-{}", oltp.split(':').next().unwrap_or("x")));
            let output =
                ubm().args(["run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &oltp, "--lake", &lake]).output().expect("runs");
            let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
            assert!(!output.status.success(), "{oltp} with unit_price {price}: the run must fail\n{said}");
            assert!(
                said.contains("unit_price") && said.contains("invoice_number") && said.contains("numeric(8,3)") && said.contains(price),
                "{oltp}, {price}:\n{said}"
            );
            assert!(staged_purchases(&lake).is_empty(), "{oltp}, {price}: nothing of the purchases is staged: {:?}", staged_purchases(&lake));
            let report = crate::common::report(&lake, DATE);
            let extract = report["tasks"].as_array().and_then(|tasks| tasks.iter().find(|t| t["name"] == "extract")).cloned().unwrap_or_default();
            assert_eq!((extract["status"].as_str(), extract["attempts"].as_u64()), (Some("failed"), Some(1)), "{oltp}, {price}: not retried");
        }
    }
}
