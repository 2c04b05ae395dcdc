//! Read-only SQL for users. Each query runs on its own connection cloned from the database, on a
//! blocking thread, with a timeout that interrupts DuckDB and a row cap. Before running, DuckDB's
//! own parser (`json_serialize_sql`, which only accepts SELECT) vets the statement, and functions
//! that read files, the environment or write state are refused. The database itself is opened
//! with external access disabled and its configuration locked (see `Store::open`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use duckdb::arrow::array::{Array, AsArray};
use duckdb::arrow::datatypes::DataType;
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;
use serde::Serialize;
use serde_json::Value as Json;

use super::StoreError;
use crate::civil::civil_from_days;
use crate::telemetry::Metrics;

#[derive(Debug, Clone)]
pub struct QueryLimits {
    pub timeout: Duration,
    pub max_rows: usize,
    pub max_sql_bytes: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(30), max_rows: 100_000, max_sql_bytes: 256 * 1024 }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
}

/// A query's answer in the shape of `POST /api/sql`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Json>>,
    /// True when the row cap cut the result.
    pub truncated: bool,
    pub elapsed_ms: f64,
}

/// Table functions and scalar functions that reach outside the database or change state.
const DENIED_FUNCTIONS: &[&str] = &[
    "read_csv",
    "read_csv_auto",
    "read_parquet",
    "parquet_scan",
    "read_json",
    "read_json_auto",
    "read_json_objects",
    "read_json_objects_auto",
    "read_ndjson",
    "read_ndjson_auto",
    "read_ndjson_objects",
    "read_text",
    "read_blob",
    "glob",
    "sniff_csv",
    "parquet_metadata",
    "parquet_schema",
    "parquet_file_metadata",
    "parquet_kv_metadata",
    "parquet_bloom_probe",
    "iceberg_scan",
    "iceberg_metadata",
    "iceberg_snapshots",
    "delta_scan",
    "read_xlsx",
    "sqlite_scan",
    "sqlite_attach",
    "postgres_scan",
    "postgres_attach",
    "mysql_scan",
    "query",
    "query_table",
    "getenv",
    "checkpoint",
    "force_checkpoint",
    "nextval",
    "setval",
    "currval",
    "duckdb_secrets",
    "which_secret",
    "load_aws_credentials",
    "install_extension",
    "load_extension",
];

pub struct Reader {
    base: Mutex<Connection>,
    limits: QueryLimits,
    metrics: Arc<Metrics>,
}

impl Reader {
    pub fn new(base: Connection, limits: QueryLimits, metrics: Arc<Metrics>) -> Self {
        Self { base: Mutex::new(base), limits, metrics }
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// A fresh connection to the same database (for other read paths, e.g. the Postgres wire).
    pub fn connection(&self) -> Result<Connection, StoreError> {
        let base = self.base.lock().map_err(|_| StoreError::Unavailable("reader lock poisoned".into()))?;
        Ok(base.try_clone()?)
    }

    /// Run `f` on a fresh connection on a blocking thread; past the query timeout, interrupt
    /// DuckDB and answer `Timeout`. Every read path goes through here.
    pub async fn with_connection<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.connection()?;
        let interrupt = conn.interrupt_handle();
        let timeout = self.limits.timeout;
        self.metrics.queries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let task = tokio::task::spawn_blocking(move || f(&conn));
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(StoreError::Unavailable(format!("query task failed: {e}"))),
            Err(_) => {
                interrupt.interrupt();
                Err(StoreError::Timeout(timeout.as_millis() as u64))
            }
        }
    }

    /// Vet and run one read-only statement.
    pub async fn query(&self, sql: String) -> Result<QueryResult, StoreError> {
        if sql.len() > self.limits.max_sql_bytes {
            return Err(StoreError::Refused(format!(
                "query is {} bytes, the limit is {}",
                sql.len(),
                self.limits.max_sql_bytes
            )));
        }
        let max_rows = self.limits.max_rows;
        self.with_connection(move |conn| {
            let started = Instant::now();
            let sql = super::sqlcompat::rewrite(&sql);
            vet(conn, &sql)?;
            let mut r = run(conn, &sql, max_rows)?;
            r.elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
            Ok(r)
        })
        .await
    }

    /// Run one of our own fixed queries with bound parameters (no vetting needed) and return the
    /// rows as JSON objects keyed by column name.
    pub async fn query_objects(
        &self,
        sql: impl Into<String>,
        params: Vec<Option<String>>,
    ) -> Result<Vec<serde_json::Map<String, Json>>, StoreError> {
        let sql = sql.into();
        self.with_connection(move |conn| {
            let mut stmt = conn.prepare(&sql)?;
            let arrow = stmt.query_arrow(duckdb::params_from_iter(params.iter()))?;
            let names: Vec<String> = arrow.get_schema().fields().iter().map(|f| f.name().clone()).collect();
            let mut out = Vec::new();
            for batch in arrow {
                for i in 0..batch.num_rows() {
                    out.push(
                        names
                            .iter()
                            .zip(batch.columns())
                            .map(|(n, c)| (n.clone(), json_value(c.as_ref(), i)))
                            .collect(),
                    );
                }
            }
            Ok(out)
        })
        .await
    }
}

/// Refuse anything but a single SELECT-like statement free of denied functions.
pub fn vet(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    let ast: String = conn
        .query_row("SELECT json_serialize_sql(?::VARCHAR)::VARCHAR", [sql], |r| r.get(0))
        .map_err(|e| StoreError::Query(e.to_string()))?;
    let ast: Json = serde_json::from_str(&ast).map_err(|e| StoreError::Query(format!("cannot vet query: {e}")))?;
    if ast.get("error").and_then(Json::as_bool) == Some(true) {
        let msg = ast.get("error_message").and_then(Json::as_str).unwrap_or("not a query");
        let kind = ast.get("error_type").and_then(Json::as_str).unwrap_or("");
        if msg.contains("Only SELECT") || kind == "not implemented" {
            return Err(StoreError::Refused(
                "only read-only SELECT queries are allowed (no INSERT/UPDATE/DELETE/CREATE/ATTACH/COPY/SET/INSTALL/PRAGMA)"
                    .into(),
            ));
        }
        return Err(StoreError::Query(msg.to_string()));
    }
    let statements = ast.get("statements").and_then(Json::as_array).map(Vec::len).unwrap_or(0);
    if statements != 1 {
        return Err(StoreError::Refused(format!("send exactly one statement, got {statements}")));
    }
    if let Some(f) = find_denied(&ast, 0) {
        return Err(StoreError::Refused(format!(
            "function {f}() is not allowed: the SQL API is read-only and cannot reach files"
        )));
    }
    Ok(())
}

fn find_denied(v: &Json, depth: usize) -> Option<String> {
    if depth > 256 {
        return Some("(too deeply nested)".into());
    }
    match v {
        Json::Object(map) => {
            if let Some(Json::String(name)) = map.get("function_name") {
                let lower = name.to_ascii_lowercase();
                if DENIED_FUNCTIONS.contains(&lower.as_str()) {
                    return Some(lower);
                }
            }
            // `FROM 'file.csv'` is a replacement scan on a table name that looks like a path.
            if map.get("type").and_then(Json::as_str) == Some("BASE_TABLE") {
                if let Some(Json::String(t)) = map.get("table_name") {
                    if t.contains('/') || t.contains('.') || t.contains('\\') {
                        return Some(format!("scan of {t:?}"));
                    }
                }
            }
            map.values().find_map(|c| find_denied(c, depth + 1))
        }
        Json::Array(items) => items.iter().find_map(|c| find_denied(c, depth + 1)),
        _ => None,
    }
}

fn run(conn: &Connection, sql: &str, max_rows: usize) -> Result<QueryResult, StoreError> {
    let mut stmt = conn.prepare(sql).map_err(|e| StoreError::Query(e.to_string()))?;
    let arrow = stmt.query_arrow([]).map_err(|e| StoreError::Query(e.to_string()))?;
    let schema = arrow.get_schema();
    let columns: Vec<Column> =
        schema.fields().iter().map(|f| Column { name: f.name().clone(), ty: sql_type_name(f.data_type()) }).collect();
    let mut rows = Vec::new();
    let mut truncated = false;
    for batch in arrow {
        let take = batch.num_rows().min(max_rows - rows.len());
        append_json_rows(&batch, take, &mut rows);
        if rows.len() >= max_rows {
            truncated = true;
            break;
        }
    }
    Ok(QueryResult { columns, rows, truncated, elapsed_ms: 0.0 })
}

/// DuckDB-style SQL type names for Arrow types (the JSON API's `type`).
pub fn sql_type_name(t: &DataType) -> String {
    match t {
        DataType::Null => "NULL".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "UTINYINT".into(),
        DataType::UInt16 => "USMALLINT".into(),
        DataType::UInt32 => "UINTEGER".into(),
        DataType::UInt64 => "UBIGINT".into(),
        DataType::Float16 | DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => "BLOB".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Time32(_) | DataType::Time64(_) => "TIME".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Interval(_) | DataType::Duration(_) => "INTERVAL".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p},{s})"),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            format!("{}[]", sql_type_name(f.data_type()))
        }
        DataType::Struct(_) => "STRUCT".into(),
        DataType::Map(_, _) => "MAP".into(),
        DataType::Dictionary(_, v) => sql_type_name(v),
        other => format!("{other}"),
    }
}

fn append_json_rows(batch: &RecordBatch, take: usize, rows: &mut Vec<Vec<Json>>) {
    let cols = batch.columns();
    for i in 0..take {
        rows.push(cols.iter().map(|c| json_value(c.as_ref(), i)).collect());
    }
}

/// One Arrow cell as JSON: numbers as numbers, timestamps as RFC 3339 (UTC), nested as JSON.
pub fn json_value(a: &dyn Array, i: usize) -> Json {
    use duckdb::arrow::datatypes::*;
    if a.is_null(i) {
        return Json::Null;
    }
    macro_rules! prim {
        ($t:ty) => {
            Json::from(a.as_primitive::<$t>().value(i))
        };
    }
    match a.data_type() {
        DataType::Boolean => Json::Bool(a.as_boolean().value(i)),
        DataType::Int8 => prim!(Int8Type),
        DataType::Int16 => prim!(Int16Type),
        DataType::Int32 => prim!(Int32Type),
        DataType::Int64 => prim!(Int64Type),
        DataType::UInt8 => prim!(UInt8Type),
        DataType::UInt16 => prim!(UInt16Type),
        DataType::UInt32 => prim!(UInt32Type),
        DataType::UInt64 => prim!(UInt64Type),
        DataType::Float32 => float(f64::from(a.as_primitive::<Float32Type>().value(i))),
        DataType::Float64 => float(a.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => Json::String(a.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Json::String(a.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => Json::String(a.as_string_view().value(i).to_string()),
        DataType::Timestamp(unit, _) => {
            let (v, per_sec) = match unit {
                TimeUnit::Second => (a.as_primitive::<TimestampSecondType>().value(i), 1),
                TimeUnit::Millisecond => (a.as_primitive::<TimestampMillisecondType>().value(i), 1_000),
                TimeUnit::Microsecond => (a.as_primitive::<TimestampMicrosecondType>().value(i), 1_000_000),
                TimeUnit::Nanosecond => (a.as_primitive::<TimestampNanosecondType>().value(i), 1_000_000_000),
            };
            Json::String(rfc3339(v, per_sec))
        }
        DataType::Date32 => {
            let days = a.as_primitive::<Date32Type>().value(i);
            let (y, m, d) = civil_from_days(i64::from(days));
            Json::String(format!("{y:04}-{m:02}-{d:02}"))
        }
        DataType::Decimal128(_, scale) => {
            let v = a.as_primitive::<Decimal128Type>().value(i);
            if *scale == 0 {
                // Integer sums come back as HUGEINT -> DECIMAL(38,0): keep them integers.
                i64::try_from(v).map(Json::from).unwrap_or_else(|_| Json::String(v.to_string()))
            } else {
                float(v as f64 / 10f64.powi(i32::from(*scale)))
            }
        }
        DataType::List(_) => {
            let l = a.as_list::<i32>().value(i);
            Json::Array((0..l.len()).map(|j| json_value(l.as_ref(), j)).collect())
        }
        DataType::Struct(fields) => {
            let s = a.as_struct();
            Json::Object(
                fields.iter().zip(s.columns()).map(|(f, c)| (f.name().clone(), json_value(c.as_ref(), i))).collect(),
            )
        }
        _ => {
            let fmt = duckdb::arrow::util::display::ArrayFormatter::try_new(a, &Default::default());
            match fmt {
                Ok(f) => Json::String(f.value(i).to_string()),
                Err(_) => Json::Null,
            }
        }
    }
}

fn float(f: f64) -> Json {
    serde_json::Number::from_f64(f).map(Json::Number).unwrap_or_else(|| Json::String(f.to_string()))
}

/// `v` units of `1/per_sec` seconds since the epoch -> `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn rfc3339(v: i64, per_sec: i64) -> String {
    let secs = v.div_euclid(per_sec);
    let frac = v.rem_euclid(per_sec);
    let micros = if per_sec >= 1_000_000 { frac / (per_sec / 1_000_000) } else { frac * (1_000_000 / per_sec) };
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z", sod / 3600, (sod % 3600) / 60, sod % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0, 1_000_000), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(1_795_273_131_457_000, 1_000_000), "2026-11-21T14:58:51.457000Z");
        assert_eq!(rfc3339(-1, 1_000_000), "1969-12-31T23:59:59.999999Z");
    }
}
