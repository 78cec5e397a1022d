//! The OLTP source `retail.user_purchase`: Postgres in production, SQLite embedded by default.
//!
//! Extraction reads the as-of snapshot (`invoice_date < D + 1 day`) straight into Arrow: from
//! Postgres in slices on the engine ([`ubm_cluster::exec::postgres`], driven by `crate::extract`);
//! from SQLite here, with one query. SQLite has no
//! exact decimal type, so the embedded database stores `unit_price` as text (`'2.550'`).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use datafusion::arrow::record_batch::RecordBatch;
use futures::SinkExt;
use rust_decimal::Decimal;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc::Sender;
use ubm_jobs::RunDate;

use crate::error::{PipelineError, Result};
use crate::secret::SecretUrl;

/// Where `retail.user_purchase` lives.
#[derive(Debug, Clone)]
pub enum Oltp {
    /// `postgres://user:password@host:port/db`: the table `retail.user_purchase`.
    Postgres(SecretUrl),
    /// `sqlite://path`: the embedded database, table `user_purchase`.
    Sqlite(PathBuf),
}

impl Oltp {
    /// The database `url` names: `postgres://…` (any case) or `sqlite://path`. The error names
    /// `flag` and never shows the password.
    pub fn from_url(flag: &str, url: SecretUrl) -> Result<Oltp> {
        match url.scheme().as_deref() {
            Some("postgres" | "postgresql") => url.into_postgres(flag).map(Oltp::Postgres),
            Some("sqlite") => {
                let path = url.expose().split_once("://").map_or("", |(_, path)| path);
                Ok(Oltp::Sqlite(PathBuf::from(path)))
            }
            _ => Err(PipelineError::BadInput {
                what: format!("{flag} `{url}`"),
                reason: "not an OLTP database URL: use postgres://user@host:5432/db or sqlite://path/to/file.sqlite".to_string(),
            }),
        }
    }
}

impl std::fmt::Display for Oltp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Oltp::Postgres(url) => write!(f, "{url}"),
            Oltp::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
        }
    }
}

/// The original DDL of the OLTP table.
pub const POSTGRES_DDL: &str = "CREATE TABLE retail.user_purchase (
    invoice_number varchar(10), stock_code varchar(20), detail varchar(1000),
    quantity int, invoice_date timestamp, unit_price numeric(8,3),
    customer_id int, country varchar(20))";

/// The same table in SQLite; `unit_price` is text so that it stays exact.
const SQLITE_DDL: &str = "CREATE TABLE user_purchase (
    invoice_number TEXT, stock_code TEXT, detail TEXT, quantity INTEGER,
    invoice_date TEXT, unit_price TEXT, customer_id INTEGER, country TEXT)";

/// Adapter for `map_err`: a Postgres request at `url` that failed while doing `doing`. Nothing
/// is allocated until there is an error (it sits on the extract's per-row path).
pub(crate) fn postgres_error<'a>(doing: &'a str, url: &'a SecretUrl) -> impl FnOnce(tokio_postgres::Error) -> PipelineError + 'a {
    move |source| PipelineError::Postgres { doing: doing.to_string(), url: url.redacted(), source }
}

fn sqlite_error<'a>(doing: &'a str, path: &'a Path) -> impl FnOnce(rusqlite::Error) -> PipelineError + 'a {
    move |source| PipelineError::Sqlite { doing: doing.to_string(), path: path.display().to_string(), source }
}

/// Column `i` of `row` as text, borrowed: five text columns of every row are on the extract's
/// hot path.
fn text_at<'r>(row: &'r rusqlite::Row<'_>, i: usize, db: &Path) -> Result<Option<&'r str>> {
    fn borrowed<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<&'r str>> {
        Ok(row.get_ref(i)?.as_str_or_null()?)
    }
    borrowed(row, i).map_err(sqlite_error("reading user_purchase from", db))
}

fn join_error(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> PipelineError {
    move |e| PipelineError::Stopped { what, source: Some(e) }
}

/// Opens a Postgres session; the connection task lives as long as the client.
pub async fn connect_postgres(url: &SecretUrl) -> Result<tokio_postgres::Client> {
    let (client, connection) =
        tokio_postgres::connect(url.expose(), tokio_postgres::NoTls).await.map_err(postgres_error("connecting to Postgres", url))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("Postgres connection closed: {e}");
        }
    });
    Ok(client)
}

impl Oltp {
    /// Replaces the table with the rows of `csv` (a `user_purchase.csv` with a header).
    pub async fn load_csv(&self, csv: &Path) -> Result<u64> {
        match self {
            Oltp::Postgres(url) => load_postgres(url, csv).await,
            Oltp::Sqlite(path) => {
                let (db, csv) = (path.clone(), csv.to_path_buf());
                tokio::task::spawn_blocking(move || load_sqlite(&db, &csv)).await.map_err(join_error("the SQLite load"))?
            }
        }
    }
}

async fn load_postgres(url: &SecretUrl, csv: &Path) -> Result<u64> {
    let mut client = connect_postgres(url).await?;
    let loading = || postgres_error("loading retail.user_purchase", url);
    let tx = client.transaction().await.map_err(loading())?;
    tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS retail; DROP TABLE IF EXISTS retail.user_purchase; {POSTGRES_DDL};"))
        .await
        .map_err(postgres_error("creating retail.user_purchase", url))?;
    let sink = tx.copy_in("COPY retail.user_purchase FROM STDIN WITH (FORMAT csv, HEADER true)").await.map_err(loading())?;
    let mut file = tokio::fs::File::open(csv).await.map_err(PipelineError::io("opening", csv))?;
    futures::pin_mut!(sink);
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut chunk).await.map_err(PipelineError::io("reading", csv))?;
        if n == 0 {
            break;
        }
        sink.send(bytes::Bytes::copy_from_slice(&chunk[..n])).await.map_err(loading())?;
    }
    let rows = sink.finish().await.map_err(loading())?;
    tx.commit().await.map_err(loading())?;
    Ok(rows)
}

fn load_sqlite(db: &Path, csv: &Path) -> Result<u64> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(PipelineError::io("creating", dir))?;
    }
    let loading = || sqlite_error("loading user_purchase into", db);
    let mut conn = rusqlite::Connection::open(db).map_err(sqlite_error("opening", db))?;
    let tx = conn.transaction().map_err(loading())?;
    tx.execute_batch(&format!("DROP TABLE IF EXISTS user_purchase; {SQLITE_DDL};")).map_err(loading())?;
    let mut rows = 0u64;
    {
        let mut insert = tx.prepare("INSERT INTO user_purchase VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)").map_err(loading())?;
        let bytes = std::fs::read(csv).map_err(PipelineError::io("reading", csv))?;
        let spans = ubm_jobs::csv::record_spans(&bytes);
        let mut fields = Vec::new();
        let bad_line = |line: u64, reason: String| PipelineError::BadInput { what: format!("{} line {line}", csv.display()), reason };
        for span in spans.iter().skip(1) {
            ubm_jobs::csv::parse_record(&bytes, span, &mut fields).map_err(|r| bad_line(r.line, r.reason))?;
            if fields.len() != 8 {
                return Err(bad_line(span.line, format!("expected 8 fields, found {}", fields.len())));
            }
            let text = |i: usize| fields[i].as_deref();
            let int = |i: usize| -> Result<Option<i64>> {
                text(i).map(|t| t.parse::<i64>().map_err(|e| bad_line(span.line, format!("`{t}` is not an integer ({e})")))).transpose()
            };
            insert.execute(rusqlite::params![text(0), text(1), text(2), int(3)?, text(4), text(5), int(6)?, text(7)]).map_err(loading())?;
            rows += 1;
        }
    }
    tx.execute_batch("CREATE INDEX user_purchase_invoice_date ON user_purchase (invoice_date)").map_err(loading())?;
    tx.commit().map_err(loading())?;
    Ok(rows)
}

/// `unit_price` as the integer of thousandths Arrow's `Decimal128(8,3)` stores, or a refusal
/// naming the row: a price wider than the contract's `numeric(8,3)` is never staged.
fn price_thousandths(price: Decimal, row: &rusqlite::Row<'_>, db: &Path) -> Result<i128> {
    ubm_jobs::purchases::price_thousandths(price).map_err(|reason| {
        let invoice = text_at(row, 0, db).ok().flatten().unwrap_or("NULL");
        PipelineError::BadInput {
            what: format!("unit_price of the row with invoice_number {invoice} in {}", db.display()),
            reason: reason.to_string(),
        }
    })
}

fn batch_error(source: datafusion::arrow::error::ArrowError) -> PipelineError {
    PipelineError::Arrow { doing: "building a batch of purchases".to_string(), source }
}

/// `YYYY-MM-DD HH:MM:SS` as microseconds since the epoch. Reads the digits where they stand
/// (chrono's format-string parser was a tenth of an SF 1 run's CPU time); `None` for anything
/// else or an impossible date or time.
fn timestamp_micros(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let separators_ok = b.len() == 19 && b[4] == b'-' && b[7] == b'-' && b[10] == b' ' && b[13] == b':' && b[16] == b':';
    if !separators_ok {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |n, &d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
    };
    let date = chrono::NaiveDate::from_ymd_opt(number(0..4)? as i32, number(5..7)?, number(8..10)?)?;
    let time = date.and_hms_opt(number(11..13)?, number(14..16)?, number(17..19)?)?;
    Some(time.and_utc().timestamp_micros())
}

fn consumer_gone() -> PipelineError {
    PipelineError::Stopped { what: "the writer of the staged snapshot", source: None }
}

/// Streams the as-of snapshot for `date` (every row with `invoice_date < date + 1 day`) of the
/// embedded database `db` into `out`, a bounded channel, so that it is never held whole in
/// memory and the consumer encodes while this decodes. Runs on a blocking thread.
pub(crate) fn extract_sqlite(db: &Path, date: RunDate, out: Sender<RecordBatch>) -> Result<()> {
    if !db.exists() {
        return Err(PipelineError::BadInput {
            what: format!("the embedded OLTP database {}", db.display()),
            reason: format!("it does not exist; create it with `ubm datagen --oltp sqlite://{}`", db.display()),
        });
    }
    // NO_MUTEX: this connection never leaves this thread, and in SQLite's default serialized
    // mode every column read takes a mutex (a fifth of an SF 1 run's CPU time, measured with perf).
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let reading = || sqlite_error("reading user_purchase from", db);
    let conn = rusqlite::Connection::open_with_flags(db, flags).map_err(sqlite_error("opening", db))?;
    let mut query = conn
        .prepare(
            "SELECT invoice_number, stock_code, detail, quantity, invoice_date, unit_price, customer_id, country \
             FROM user_purchase WHERE invoice_date < ?1",
        )
        .map_err(sqlite_error("finding the user_purchase table (create it with `ubm datagen`) in", db))?;
    let mut rows = query.query([date.next_day().to_string()]).map_err(reading())?;
    let mut batch = ubm_jobs::purchases::PurchaseBatch::new();
    let mut sent_any = false;
    let bad = |what: String, reason: &str| PipelineError::BadInput { what, reason: reason.to_string() };
    while let Some(row) = rows.next().map_err(reading())? {
        batch.invoice_number.append_option(text_at(row, 0, db)?);
        batch.stock_code.append_option(text_at(row, 1, db)?);
        batch.detail.append_option(text_at(row, 2, db)?);
        batch.quantity.append_option(row.get::<_, Option<i32>>(3).map_err(reading())?);
        let at = text_at(row, 4, db)?
            .map(|t| timestamp_micros(t).ok_or_else(|| bad(format!("invoice_date `{t}` in {}", db.display()), "not YYYY-MM-DD HH:MM:SS")))
            .transpose()?;
        batch.invoice_date.append_option(at);
        let price = text_at(row, 5, db)?
            .map(|p| Decimal::from_str(p).map_err(|_| bad(format!("unit_price `{p}` in {}", db.display()), "not a decimal")))
            .transpose()?;
        batch.unit_price.append_option(price.map(|p| price_thousandths(p, row, db)).transpose()?);
        batch.customer_id.append_option(row.get::<_, Option<i32>>(6).map_err(reading())?);
        batch.country.append_option(text_at(row, 7, db)?);
        if let Some(full) = batch.row_done().map_err(batch_error)? {
            out.blocking_send(full).map_err(|_| consumer_gone())?;
            sent_any = true;
        }
    }
    if let Some(last) = batch.last(sent_any).map_err(batch_error)? {
        out.blocking_send(last).map_err(|_| consumer_gone())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::timestamp_micros;

    #[test]
    fn timestamps_are_read_where_the_digits_stand() {
        let expected =
            chrono::NaiveDateTime::parse_from_str("2010-12-01 08:26:00", "%Y-%m-%d %H:%M:%S").expect("chrono").and_utc().timestamp_micros();
        assert_eq!(timestamp_micros("2010-12-01 08:26:00"), Some(expected));
        assert_eq!(timestamp_micros("1969-12-31 23:59:59"), Some(-1_000_000));
        for bad in [
            "2010-12-01",
            "2010-12-01T08:26:00",
            "2010-13-01 08:26:00",
            "2010-02-30 08:26:00",
            "2010-12-01 24:00:00",
            "2010-1x-01 08:26:00",
            "+010-12-01 08:26:00",
        ] {
            assert_eq!(timestamp_micros(bad), None, "{bad}");
        }
    }
}
