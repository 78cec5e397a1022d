//! A whole day through the library, in this process, with no `ubm` binary: the same test in
//! each in-process mode (DataFusion, and Ballista standalone: scheduler and executor in this
//! process, plans serialized and shipped as on a cluster).

use std::path::Path;

use datafusion::arrow::record_batch::RecordBatch;
use ubm_cluster::{Engine, EngineKind};
use ubm_jobs::{RunDate, Semantics};
use ubm_pipeline::datagen::{DatagenConfig, generate};
use ubm_pipeline::{Lake, Oltp, RetryPolicy, RunConfig, RunReport, TaskStatus, run_date};

use crate::common::{batch_rows, parquet_rows, partition};

/// Sample data (SF 0.01, seed 7) and an embedded database, made through the library.
async fn sample(dir: &Path) -> (String, Oltp) {
    let config = DatagenConfig { scale: 0.01, seed: 7, out: dir.join("sample") };
    let generated = tokio::task::spawn_blocking(move || generate(&config)).await.expect("join").expect("datagen");
    let oltp = Oltp::Sqlite(dir.join("oltp.sqlite"));
    oltp.load_csv(&generated.purchases_csv).await.expect("load the embedded database");
    (generated.reviews_csv.display().to_string(), oltp)
}

async fn day_through_the_library(kind: EngineKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (reviews, oltp) = sample(dir.path()).await;
    let lake_dir = dir.path().join("lake").display().to_string();
    let config = RunConfig {
        reviews,
        oltp,
        lake: Lake::open(&lake_dir).await.expect("lake"),
        warehouse: None,
        semantics: Semantics::Correct,
        retry: RetryPolicy::default(),
        wait_for_lease: std::time::Duration::ZERO,
        run_id: None,
        audit: ubm_pipeline::audit::AuditPolicy::default(),
    };
    let engine = Engine::start(kind.clone()).await.expect("engine");
    let date: RunDate = "2011-12-31".parse().expect("date");
    let report = run_date(&engine, &config, date).await.expect("the run completes");

    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(report.engine, kind.to_string());
    for task in &report.tasks {
        let expected = if task.name == "load" { TaskStatus::Skipped } else { TaskStatus::Succeeded };
        assert_eq!(task.status, expected, "{task:?}");
        assert!(task.status == TaskStatus::Skipped || task.attempts == 1, "{task:?}");
    }
    let counts = &report.counts;
    assert!(report.counts_reconcile);
    assert_eq!(counts.review_records_read, 1000, "SF 0.01 has 1,000 reviews");
    assert_eq!(counts.purchase_rows_extracted, 5419, "every purchase is before 2011-12-31");
    assert!(counts.metric_rows_written > 0, "{counts:?}");

    // The lake holds the rows the run counted; the report's top customers are the lake's
    // biggest spenders (ties by id); the report it wrote is this one.
    let lake_rows = parquet_rows(&partition(&lake_dir, "warehouse/user_behavior_metric", "2011-12-31"));
    assert_eq!(lake_rows.len() as u64, counts.metric_rows_written);
    let field = |row: &str, i: usize| row.split('|').nth(i).expect("field").to_string();
    let mut by_amount = lake_rows.clone();
    by_amount.sort_by(|a, b| {
        let amount = |r: &str| field(r, 1).parse::<f64>().expect("amount");
        let id = |r: &str| field(r, 0).parse::<i64>().expect("id");
        amount(b).total_cmp(&amount(a)).then(id(a).cmp(&id(b)))
    });
    let top: Vec<String> = report.top_customers.iter().flat_map(without_date).collect();
    assert_eq!(top, by_amount[..5.min(by_amount.len())]);
    let written: RunReport = serde_json::from_slice(&std::fs::read(Path::new(&lake_dir).join("_runs/2011-12-31.json")).expect("the run report"))
        .expect("the run report reads back");
    assert_eq!(written.counts, report.counts);
    assert_eq!(written.status, report.status);
}

/// The metric's rows as the lake stores them: without the partition column `insert_date`.
fn without_date(batch: &RecordBatch) -> Vec<String> {
    let keep: Vec<usize> = (0..batch.num_columns()).filter(|i| batch.schema().field(*i).name() != "insert_date").collect();
    batch_rows(&batch.project(&keep).expect("project"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_through_the_library_local() {
    day_through_the_library(EngineKind::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_through_the_library_standalone() {
    day_through_the_library(EngineKind::Standalone).await;
}

/// Every slice of the Postgres extract reads in the one snapshot the driver exported: rows
/// inserted, deleted and updated after the export, by another session that commits, change
/// nothing of what the slices read, and together they read every row of the snapshot once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_slices_read_one_snapshot_while_the_table_changes() {
    let Some(db) = crate::common::TestDb::create() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, _) = sample(dir.path()).await;
    let oltp = Oltp::Postgres(ubm_pipeline::secret::SecretUrl::new(db.url()));
    oltp.load_csv(&dir.path().join("sample/user_purchase.csv")).await.expect("load Postgres");
    let before = db.query("SELECT count(*), sum(quantity) FROM retail.user_purchase");

    let url = ubm_pipeline::secret::SecretUrl::new(db.url());
    let session = ubm_pipeline::oltp::connect_postgres(&url).await.expect("connect");
    session.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.expect("begin");
    let row = session
        .query_one(
            "SELECT pg_export_snapshot(), (pg_relation_size('retail.user_purchase') / current_setting('block_size')::int8)::int8, \
             current_setting('block_size')::int8",
            &[],
        )
        .await
        .expect("export");
    let (snapshot, blocks, block_bytes): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
    db.query(
        "INSERT INTO retail.user_purchase SELECT * FROM retail.user_purchase LIMIT 500; \
         DELETE FROM retail.user_purchase WHERE ctid IN (SELECT ctid FROM retail.user_purchase LIMIT 100); \
         UPDATE retail.user_purchase SET quantity = quantity + 1000 WHERE customer_id % 7 = 0",
    );
    assert_ne!(db.query("SELECT count(*), sum(quantity) FROM retail.user_purchase"), before, "the table changed");

    let engine = Engine::start(EngineKind::Local).await.expect("engine");
    let extract = ubm_cluster::exec::postgres::PgExtract {
        url: db.url(),
        shown: db.url(),
        before: "2100-01-01".into(),
        snapshot,
        blocks: blocks as u64,
        block_bytes: block_bytes as u64,
    };
    let plan = engine.postgres_slices(extract).expect("plan");
    let physical = engine.context().state().create_physical_plan(&plan).await.expect("physical");
    assert!(physical.properties().output_partitioning().partition_count() >= 2, "read in several slices");
    let batches = datafusion::physical_plan::collect(physical, engine.context().task_ctx()).await.expect("slices read");
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let quantity: i64 = batches
        .iter()
        .flat_map(|b| {
            let q = b.column_by_name("quantity").expect("quantity");
            let q = datafusion::arrow::array::AsArray::as_primitive::<datafusion::arrow::datatypes::Int32Type>(q.as_ref()).clone();
            q.iter().flatten().map(i64::from).collect::<Vec<_>>()
        })
        .sum();
    assert_eq!(vec![format!("{rows}|{quantity}")], before, "the slices read the snapshot, every row once");
    session.batch_execute("COMMIT").await.expect("commit");
}

/// A slice of the Postgres extract that fails decides about another attempt from its cause's
/// type, and the decision is the same in-process and on a cluster of processes (where the
/// error crosses from an executor as text): a price wider than `numeric(8,3)`, a missing
/// privilege and a missing table are final; a connection cut mid-stream is worth another try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_slice_errors_are_final_or_retried_alike_in_process_and_on_a_cluster() {
    let Some(wide) = crate::common::TestDb::create() else { return };
    let Some(loaded) = crate::common::TestDb::create() else { return };
    let Some(empty) = crate::common::TestDb::create() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    wide.query(
        "CREATE SCHEMA retail; CREATE TABLE retail.user_purchase (invoice_number varchar(10), stock_code varchar(20), \
         detail varchar(1000), quantity int, invoice_date timestamp, unit_price numeric(12,3), customer_id int, country varchar(20)); \
         INSERT INTO retail.user_purchase VALUES ('536365', '85123A', 'fits', 6, '2010-12-01 08:26:00', 2.55, 17850, 'UK'), \
         ('536366', '71053', 'too wide', 1, '2010-12-01 08:28:00', 3000000.000, 17850, 'UK')",
    );
    let reader = NoSelectRole::create(&wide);
    let config = DatagenConfig { scale: 0.1, seed: 7, out: dir.path().join("sample") };
    let generated = tokio::task::spawn_blocking(move || generate(&config)).await.expect("join").expect("datagen");
    let loaded_url = ubm_pipeline::secret::SecretUrl::new(loaded.url());
    Oltp::Postgres(loaded_url).load_csv(&generated.purchases_csv).await.expect("load Postgres");
    let proxy = CuttingProxy::start(&loaded, 256 * 1024);

    let cases: Vec<(&str, String, String, bool)> = vec![
        ("a price wider than numeric(8,3)", wide.url(), wide.url(), false),
        ("no SELECT privilege on the table", wide.url(), reader.url(&wide), false),
        ("no table retail.user_purchase", empty.url(), empty.url(), false),
        ("the connection cut mid-stream", loaded.url(), proxy.url(&loaded), true),
    ];
    let cluster = crate::common::Cluster::start(2);
    let remote = EngineKind::Remote(cluster.engine.parse().expect("scheduler address"));
    for kind in [EngineKind::Local, remote] {
        let engine = Engine::start(kind.clone()).await.expect("engine");
        for (case, exporter, slices_url, worth) in &cases {
            let (session, extract) = exported_snapshot(exporter, slices_url).await;
            let out = dir.path().join(format!("parts-{}", uuid_like()));
            let (retryable, said) = slice_failure(&engine, extract, &out).await;
            assert_eq!(retryable, *worth, "{case} on {kind}: retryable {retryable}, error: {said}");
            assert!(said.contains("retail.user_purchase"), "{case} on {kind}: the error names the table: {said}");
            if case.starts_with("no SELECT") {
                assert!(said.contains("permission denied"), "{case} on {kind}: the slice ran as the role without SELECT: {said}");
            }
            if case.starts_with("a price") {
                assert!(said.contains("3000000.000") && said.contains("invoice_number 536366"), "{case} on {kind}: {said}");
            }
            session.batch_execute("COMMIT").await.expect("commit");
        }
    }
}

/// A transaction on `exporter` that exported its snapshot (kept open while the slices read),
/// and the extract of every row before 2100 whose slices connect to `slices_url`.
async fn exported_snapshot(exporter: &str, slices_url: &str) -> (tokio_postgres::Client, ubm_cluster::exec::postgres::PgExtract) {
    let session = ubm_pipeline::oltp::connect_postgres(&ubm_pipeline::secret::SecretUrl::new(exporter.to_string())).await.expect("connect");
    session.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.expect("begin");
    let row = session
        .query_one(
            "SELECT pg_export_snapshot(), coalesce(pg_relation_size(to_regclass('retail.user_purchase')) / current_setting('block_size')::int8, 0)::int8, \
             current_setting('block_size')::int8",
            &[],
        )
        .await
        .expect("export");
    let (snapshot, blocks, block_bytes): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
    let extract = ubm_cluster::exec::postgres::PgExtract {
        url: slices_url.to_string(),
        shown: slices_url.to_string(),
        before: "2100-01-01".into(),
        snapshot,
        blocks: blocks as u64,
        block_bytes: block_bytes as u64,
    };
    (session, extract)
}

/// Runs the extract's slices into part files under `out`; the error they fail with, as the run
/// would see it: whether it is worth another attempt, and its description.
async fn slice_failure(engine: &Engine, extract: ubm_cluster::exec::postgres::PgExtract, out: &Path) -> (bool, String) {
    use ubm_cluster::exec::parts::{PartsKind, PartsSpec};
    std::fs::create_dir_all(out).expect("parts dir");
    let dir = url::Url::from_directory_path(out).expect("dir url");
    let plan = engine.postgres_slices(extract).expect("plan");
    let error = engine.write_parts(plan, PartsSpec::new(&dir, PartsKind::Rows), "ubm extract (test)").await.expect_err("a slice fails");
    let error = ubm_pipeline::PipelineError::from(error);
    (error.is_retryable(), error.describe())
}

fn uuid_like() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst).to_string()
}

/// A login role that may use the schema `retail` of a database but not read its table; dropped
/// at the end of the test.
struct NoSelectRole {
    name: String,
    admin: String,
}

impl NoSelectRole {
    fn create(db: &crate::common::TestDb) -> NoSelectRole {
        let name = format!("ubm_noselect_{}", std::process::id());
        db.query(&format!("DROP ROLE IF EXISTS {name}; CREATE ROLE {name} LOGIN; GRANT USAGE ON SCHEMA retail TO {name}"));
        NoSelectRole { name, admin: db.url() }
    }

    /// `db`'s URL, logging in as this role (the test Postgres trusts its connections).
    fn url(&self, db: &crate::common::TestDb) -> String {
        let mut url = url::Url::parse(&db.url()).expect("the test database's URL");
        url.set_username(&self.name).expect("a URL with a host takes a user name");
        url.set_password(None).expect("and drops a password");
        url.to_string()
    }
}

impl Drop for NoSelectRole {
    fn drop(&mut self) {
        let sql = format!("DROP OWNED BY {0}; DROP ROLE IF EXISTS {0}", self.name);
        let _ = std::process::Command::new("psql").args([self.admin.as_str(), "-qAtc", &sql]).output();
    }
}

/// A TCP proxy in front of the test database's Postgres that cuts every connection once
/// `cut_after` bytes came from the server: a slice's connection dies mid-stream, as a network
/// reset would end it. Its threads end with the test process.
struct CuttingProxy {
    port: u16,
}

impl CuttingProxy {
    fn start(db: &crate::common::TestDb, cut_after: usize) -> CuttingProxy {
        let url = url::Url::parse(&db.url()).expect("the test database's URL");
        let server = format!("{}:{}", url.host_str().expect("a host"), url.port().unwrap_or(5432));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let server = server.clone();
                std::thread::spawn(move || Self::forward(client, &server, cut_after));
            }
        });
        CuttingProxy { port }
    }

    fn forward(client: std::net::TcpStream, server: &str, cut_after: usize) {
        use std::io::{Read, Write};
        let Ok(server) = std::net::TcpStream::connect(server) else { return };
        let (Ok(mut client_in), Ok(mut server_out)) = (client.try_clone(), server.try_clone()) else { return };
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut client_in, &mut server_out);
        });
        let (mut from_server, mut to_client) = (server, client);
        let mut sent = 0;
        let mut buffer = [0u8; 16 * 1024];
        while sent < cut_after {
            let Ok(n @ 1..) = from_server.read(&mut buffer) else { break };
            if to_client.write_all(&buffer[..n]).is_err() {
                break;
            }
            sent += n;
        }
        let _ = to_client.shutdown(std::net::Shutdown::Both);
        let _ = from_server.shutdown(std::net::Shutdown::Both);
    }

    /// `db`'s URL through the proxy.
    fn url(&self, db: &crate::common::TestDb) -> String {
        let mut url = url::Url::parse(&db.url()).expect("the test database's URL");
        url.set_host(Some("127.0.0.1")).expect("a host");
        url.set_port(Some(self.port)).expect("a port");
        url.to_string()
    }
}
