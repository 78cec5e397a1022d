//! Inputs and outputs as object-store URLs: the whole run against S3 served by moto.

use crate::common::{Moto, Sample, text, ubm};

const DATE: &str = "2011-12-31";

#[test]
fn a_run_reads_and_writes_s3() {
    let Some(moto) = Moto::start() else { return };
    let sample = Sample::new("0.01");
    moto.boto3(&format!(
        "s3.create_bucket(Bucket='vendor')\ns3.create_bucket(Bucket='lake')\n\
         s3.upload_file('{}', 'vendor', 'daily/{DATE}/movie_review.csv')",
        sample.reviews()
    ));
    let output = ubm()
        .args([
            "run", "--date", DATE, "--reviews", "s3://vendor/daily/{date}/movie_review.csv", "--oltp", &sample.sqlite(),
            "--lake", "s3://lake/ubm", "--json", "--attempts", "1",
        ])
        .envs(moto.env())
        .output()
        .expect("ubm runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let reports: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let counts = &reports[0]["counts"];
    assert_eq!(reports[0]["counts_reconcile"], true);
    assert_eq!(counts["review_records_read"], 1000);
    let local = crate::common::ubm_ok(&[
        "run", "--date", DATE, "--reviews", &sample.reviews(), "--oltp", &sample.sqlite(), "--lake", &sample.lake("local"), "--json",
    ]);
    let local: serde_json::Value = serde_json::from_slice(&local.stdout).expect("json");
    assert!(counts["metric_rows_written"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(counts, &local[0]["counts"], "S3 and the local disk give the same run");

    let keys = moto.boto3("for o in s3.list_objects_v2(Bucket='lake')['Contents']: print(o['Key'])");
    for expected in [
        format!("ubm/raw/movie_review/insert_date={DATE}/movie_review.csv"),
        format!("ubm/stage/movie_review/insert_date={DATE}/part-00000.parquet"),
        format!("ubm/stage/user_purchase/insert_date={DATE}/_SUCCESS"),
        format!("ubm/warehouse/user_behavior_metric/insert_date={DATE}/part-00000.parquet"),
        format!("ubm/warehouse/user_behavior_metric/insert_date={DATE}/_SUCCESS"),
        format!("ubm/_runs/{DATE}.json"),
    ] {
        assert!(keys.lines().any(|k| k == expected), "{expected} missing from the lake:\n{keys}");
    }
    assert!(!keys.lines().any(|k| k.starts_with("ubm/_staging/")), "staging is cleaned up:\n{keys}");

    // The same run on a cluster: the scheduler and executors read s3:// themselves.
    let cluster = crate::common::Cluster::start_with_env(2, moto.env());
    let output = ubm()
        .args([
            "run", "--date", DATE, "--reviews", "s3://vendor/daily/{date}/movie_review.csv", "--oltp", &sample.sqlite(),
            "--lake", "s3://lake/on-cluster", "--json", "--attempts", "1", "--engine", &cluster.engine,
        ])
        .envs(moto.env())
        .output()
        .expect("ubm runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let on_cluster: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(&on_cluster[0]["counts"], counts, "the cluster reads S3 like the client");
}
