//! Read-only SQL for users. Each query runs on its own connection cloned from the database, on a
//! blocking thread, under a watchdog that interrupts DuckDB at the query timeout and keeps
//! interrupting until the work has stopped. Before running, DuckDB's own parser
//! (`json_serialize_sql`) serializes the statement and `sandbox` allows it or not (one SELECT,
//! only allow-listed functions, nothing that reveals server paths). The row cap is pushed into
//! DuckDB's plan (`SELECT * FROM (q) LIMIT cap + 1`) and the result is streamed, so an answer never
//! materialises more than the cap; answers are also capped in bytes. The database itself is
//! opened with external access disabled and its configuration locked (see `Store::open`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use duckdb::arrow::array::{Array, AsArray};
use duckdb::arrow::datatypes::{DataType, Schema, SchemaRef};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::{Connection, InterruptHandle, Statement};
use serde::Serialize;
use serde_json::Value as Json;

use super::sandbox::{self, SandboxError};
use super::StoreError;
use crate::civil::civil_from_days;
use crate::telemetry::Metrics;

#[derive(Debug, Clone)]
pub struct QueryLimits {
    pub timeout: Duration,
    pub max_rows: usize,
    /// Longest SQL text accepted (HTTP and the Postgres wire protocol alike).
    pub max_sql_bytes: usize,
    /// Most bytes of one answer (JSON rows, Postgres DataRows); past it the answer is truncated.
    pub max_result_bytes: usize,
    /// How long a streamed answer waits for a client that stopped reading before the query is
    /// cancelled and its transaction closed (HTTP streams and Postgres connections).
    pub send_timeout: Duration,
    /// Postgres wire protocol: most open connections (more are refused with SQLSTATE 53300).
    pub pg_max_connections: usize,
    /// Postgres wire protocol: a session waiting this long for its next message is closed.
    pub pg_idle_timeout: Duration,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_rows: 100_000,
            max_sql_bytes: 256 * 1024,
            max_result_bytes: 64 * 1024 * 1024,
            send_timeout: Duration::from_secs(30),
            pg_max_connections: 64,
            pg_idle_timeout: Duration::from_secs(600),
        }
    }
}

/// Deepest nesting of list/struct/map types a result may have (Arrow conversion and Arrow to JSON
/// or Postgres text recurse once per level; DuckDB builds a type 100,000 levels deep from a short
/// string: `json_transform(j, '{"a":{"a":...}}')`).
pub const MAX_TYPE_DEPTH: usize = 32;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
}

/// A query's answer held whole (`Reader::query`, for the collector's own callers; `POST /api/sql`
/// streams the same shape, `stream::JsonAnswer`). The rows are kept as their JSON text (one array
/// of arrays), written while DuckDB's chunks stream in (`JsonRows`), so the bytes cap counts the
/// text itself and a result is held once, not as values and then again as text.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<Column>,
    /// `[[...],[...]]`.
    pub rows_json: String,
    pub row_count: usize,
    /// True when a cap cut the result.
    pub truncated: bool,
    /// Which cap: `max_rows` or `max_bytes` (absent when not truncated).
    pub truncated_by: Option<&'static str>,
    pub elapsed_ms: f64,
}

/// A JSON answer up to its rows: `{"columns":[...],"rows":`.
pub fn json_head(columns: &[Column]) -> String {
    let columns = serde_json::to_string(columns).unwrap_or_else(|_| "[]".into());
    format!("{{\"columns\":{columns},\"rows\":")
}

/// A JSON answer after its rows: `,"truncated":..,"truncated_by":..?,"elapsed_ms":..}`.
pub fn json_tail(truncated_by: Option<&str>, elapsed_ms: f64) -> String {
    let mut tail = String::with_capacity(64);
    tail.push_str(",\"truncated\":");
    tail.push_str(if truncated_by.is_some() { "true" } else { "false" });
    if let Some(by) = truncated_by {
        tail.push_str(",\"truncated_by\":");
        tail.push_str(&Json::from(by).to_string());
    }
    tail.push_str(",\"elapsed_ms\":");
    tail.push_str(&Json::from(elapsed_ms).to_string());
    tail.push('}');
    tail
}

/// The `columns` of a JSON answer: names as the client wrote them, DuckDB-style type names.
pub fn json_columns(schema: &Schema, names: Vec<String>) -> Vec<Column> {
    schema.fields().iter().zip(names).map(|(f, name)| Column { name, ty: sql_type_name(f.data_type()) }).collect()
}

/// The rows of a JSON answer (`[[...],[...]]`), written as DuckDB's chunks arrive, under the
/// row cap and the byte cap (which counts the brackets and commas too). A row is encoded aside
/// first, so the output never grows past the cap.
pub struct JsonRows {
    row: Vec<Json>,
    line: Vec<u8>,
    /// Rows written.
    pub count: usize,
    bytes: usize,
    max_rows: usize,
    max_bytes: usize,
    /// Which cap cut the rows, once one did.
    pub truncated_by: Option<&'static str>,
}

impl JsonRows {
    pub fn new(max_rows: usize, max_bytes: usize) -> Self {
        JsonRows { row: Vec::new(), line: Vec::new(), count: 0, bytes: 0, max_rows, max_bytes, truncated_by: None }
    }

    /// Write the opening `[`.
    pub fn open(&mut self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        self.bytes = 1;
        out.write_all(b"[")
    }

    /// Write `batch`'s rows; false once a cap is reached (the rest is not wanted).
    pub fn write(&mut self, batch: &RecordBatch, out: &mut impl std::io::Write) -> std::io::Result<bool> {
        let cols = batch.columns();
        for i in 0..batch.num_rows() {
            if self.count >= self.max_rows {
                self.truncated_by = Some("max_rows");
                return Ok(false);
            }
            self.row.clear();
            self.row.extend(cols.iter().map(|c| json_value(c.as_ref(), i)));
            self.line.clear();
            serde_json::to_writer(&mut self.line, &self.row)?;
            if self.bytes + self.line.len() + 2 > self.max_bytes {
                self.truncated_by = Some("max_bytes");
                return Ok(false);
            }
            if self.count > 0 {
                out.write_all(b",")?;
                self.bytes += 1;
            }
            out.write_all(&self.line)?;
            self.bytes += self.line.len();
            self.count += 1;
        }
        Ok(true)
    }

    /// Write the closing `]`.
    pub fn close(&mut self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        out.write_all(b"]")
    }
}

pub struct Reader {
    base: Mutex<Connection>,
    limits: QueryLimits,
    metrics: Arc<Metrics>,
    /// Every connection handed out, so a checkpoint can evict them (`evict.rs`).
    readers: Arc<super::evict::Readers>,
    /// Blocking threads holding a connection for a query right now.
    in_flight: Arc<AtomicUsize>,
}

/// Counts a worker in `in_flight` for as long as it lives.
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Stops a query that outlives its time: at `timeout` it marks the query cancelled and interrupts
/// DuckDB, then interrupts again every 50 ms until the worker reports it has finished (an
/// interrupt only stops the statement running at that moment; the next one would run on).
pub struct Watchdog {
    cancelled: Arc<AtomicBool>,
    finished: Arc<AtomicBool>,
}

impl Watchdog {
    pub fn arm(interrupt: Arc<InterruptHandle>, timeout: Duration) -> Watchdog {
        let cancelled = Arc::new(AtomicBool::new(false));
        let finished = Arc::new(AtomicBool::new(false));
        let (c, f) = (cancelled.clone(), finished.clone());
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if f.load(Ordering::Acquire) {
                return;
            }
            c.store(true, Ordering::Release);
            while !f.load(Ordering::Acquire) {
                interrupt.interrupt();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Watchdog { cancelled, finished }
    }

    /// Whether the timeout has fired.
    pub fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// A flag the worker reads between steps.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancelled.clone()
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.finished.store(true, Ordering::Release);
    }
}

impl Reader {
    pub fn new(
        base: Connection,
        limits: QueryLimits,
        metrics: Arc<Metrics>,
        readers: Arc<super::evict::Readers>,
    ) -> Self {
        Self { base: Mutex::new(base), limits, metrics, readers, in_flight: Arc::new(AtomicUsize::new(0)) }
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// Queries holding a DuckDB connection (and so a transaction) right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Count a new worker in `in_flight` (dropped when it ends).
    /// Count a query in `queries_total` (`with_connection` does; a streamed answer calls this).
    pub(super) fn count_query(&self) {
        self.metrics.queries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn track(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.in_flight.clone())
    }

    /// A fresh connection to the same database (for other read paths, e.g. the Postgres wire),
    /// registered so that a checkpoint can evict it (`evict.rs`).
    pub fn connection(&self) -> Result<super::evict::ReadConn, StoreError> {
        let Some(_making) = self.readers.making() else {
            self.metrics.queries_evicted.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Evicted);
        };
        let base = self.base.lock().map_err(|_| StoreError::Unavailable("reader lock poisoned".into()))?;
        let conn = super::recovery::clone_connection(&base)?;
        drop(base);
        Ok(self.readers.register(conn))
    }

    /// Refuse SQL longer than `max_sql_bytes`.
    pub fn check_size(&self, sql: &str) -> Result<(), StoreError> {
        if sql.len() > self.limits.max_sql_bytes {
            return Err(StoreError::Refused(format!(
                "query is {} bytes, the limit is {}",
                sql.len(),
                self.limits.max_sql_bytes
            )));
        }
        Ok(())
    }

    /// Run `f` on a fresh connection on a blocking thread under a `Watchdog`. Past the query
    /// timeout the caller gets `Timeout` at once, and the watchdog keeps interrupting DuckDB until
    /// `f` has returned and the connection (with its transaction) is closed. Every read path goes
    /// through here.
    pub async fn with_connection<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.connection()?;
        let timeout = self.limits.timeout;
        let watchdog = Watchdog::arm(conn.interrupt_handle(), timeout);
        let cancelled = watchdog.cancel_flag();
        let eviction = conn.eviction();
        self.metrics.queries.fetch_add(1, Ordering::Relaxed);
        let tracked = self.track();
        let mut task = tokio::task::spawn_blocking(move || {
            // Readers share the bulk tier with decoding (`priority.rs`).
            crate::priority::background();
            let _tracked = tracked;
            let _watchdog = watchdog;
            let r = conn.scoped(f);
            drop(conn);
            r
        });
        let timed_out = || StoreError::Timeout(timeout.as_millis() as u64);
        tokio::select! {
            r = &mut task => match r {
                Ok(Err(_)) if cancelled.load(Ordering::Acquire) => Err(timed_out()),
                Ok(Err(_)) if eviction.is_evicted() => Err(StoreError::Evicted),
                Ok(r) => r,
                Err(e) => Err(StoreError::Unavailable(format!("query task failed: {e}"))),
            },
            // The worker runs on (interrupted) without anyone waiting for it.
            _ = tokio::time::sleep(timeout) => Err(timed_out()),
        }
    }

    /// Vet and run one read-only statement.
    pub async fn query(&self, sql: String) -> Result<QueryResult, StoreError> {
        self.check_size(&sql)?;
        let limits = self.limits.clone();
        self.with_connection(move |conn| {
            let started = Instant::now();
            let sql = super::sqlcompat::rewrite(&sql);
            vet(conn, &sql)?;
            let mut r = run(conn, &sql, &limits)?;
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

/// Refuse anything but a single read-only statement that stays inside the sandbox.
pub fn vet(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    let ast: String = conn
        .query_row("SELECT json_serialize_sql(?::VARCHAR)::VARCHAR", [sql], |r| r.get(0))
        .map_err(|e| StoreError::Query(e.to_string()))?;
    sandbox::check(&ast).map_err(|e| match e {
        SandboxError::Refused(m) => StoreError::Refused(m),
        SandboxError::Invalid(m) => StoreError::Query(m),
    })
}

/// `sql` as a subquery under `LIMIT cap + 1`, so DuckDB itself stops producing rows past the cap.
pub fn capped_sql(sql: &str, cap: usize) -> String {
    let body = sql.trim_end().trim_end_matches(';');
    format!("SELECT * FROM (\n{body}\n) AS agent_console_capped LIMIT {}", cap.saturating_add(1))
}

/// Prepare `sql` capped at `cap` rows inside DuckDB when it can be a subquery (a SELECT, VALUES,
/// FROM-first, DESCRIBE, ...), else as it is. Returns whether the cap is in the plan.
pub fn prepare_capped<'c>(conn: &'c Connection, sql: &str, cap: usize) -> Result<(Statement<'c>, bool), StoreError> {
    match conn.prepare(&capped_sql(sql, cap)) {
        Ok(s) => Ok((s, true)),
        Err(_) => Ok((conn.prepare(sql).map_err(|e| StoreError::Query(e.to_string()))?, false)),
    }
}

/// The result column names of `sql` as the client wrote them. Wrapping a query in a subquery
/// de-duplicates its column names (`a, a` becomes `a, a_1`); when `schema` shows a name that may
/// be such a rename, the original names are read back with `DESCRIBE` (a bind, no execution) on
/// a second connection.
pub fn original_names(conn: &Connection, sql: &str, schema: &Schema) -> Vec<String> {
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let lower: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
    let renamed = lower.iter().enumerate().any(|(i, n)| {
        n.rsplit_once('_').is_some_and(|(base, digits)| {
            !digits.is_empty()
                && digits.bytes().all(|d| d.is_ascii_digit())
                && lower.iter().enumerate().any(|(j, m)| j != i && m == base)
        })
    });
    if !renamed {
        return names;
    }
    let body = sql.trim_end().trim_end_matches(';');
    // On a second connection: a new statement on `conn` would close the result being streamed.
    let described: Option<Vec<String>> = super::recovery::clone_connection(conn)
        .and_then(|c| {
            let mut s = c.prepare(&format!("DESCRIBE {body}"))?;
            let rows = s.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect()
        })
        .ok();
    match described {
        Some(d) if d.len() == names.len() => d,
        _ => names,
    }
}

/// `schema` with `names` (same length) as its field names.
pub fn renamed_schema(schema: &Schema, names: &[String]) -> SchemaRef {
    Arc::new(Schema::new(
        schema.fields().iter().zip(names).map(|(f, n)| f.as_ref().clone().with_name(n.clone())).collect::<Vec<_>>(),
    ))
}

/// Refuse a prepared statement whose result types nest deeper than `MAX_TYPE_DEPTH`, checked on
/// DuckDB's logical types before anything runs (without recursion): converting such a result to
/// Arrow (DuckDB's converter and arrow's schema import recurse per level) overflows the stack.
pub fn check_type_depth(stmt: &Statement<'_>) -> Result<(), StoreError> {
    use duckdb::core::LogicalTypeId;
    let mut stack: Vec<_> = (0..stmt.column_count()).map(|i| (stmt.column_logical_type(i), 1usize)).collect();
    while let Some((t, depth)) = stack.pop() {
        if depth > MAX_TYPE_DEPTH {
            return Err(StoreError::Refused(format!(
                "the result's types nest more than {MAX_TYPE_DEPTH} levels deep, the limit is {MAX_TYPE_DEPTH}"
            )));
        }
        if let Ok(
            LogicalTypeId::Struct
            | LogicalTypeId::Union
            | LogicalTypeId::List
            | LogicalTypeId::Array
            | LogicalTypeId::Map,
        ) = t.try_id()
        {
            for k in 0..t.num_children() {
                stack.push((t.child(k), depth + 1));
            }
        }
    }
    Ok(())
}

fn run(conn: &Connection, sql: &str, limits: &QueryLimits) -> Result<QueryResult, StoreError> {
    let max_rows = limits.max_rows;
    let (mut stmt, _capped) = prepare_capped(conn, sql, max_rows)?;
    check_type_depth(&stmt)?;
    let arrow = stmt.stream_arrow([]).map_err(|e| StoreError::Query(e.to_string()))?;
    let schema = arrow.get_schema();
    let names = original_names(conn, sql, &schema);
    let columns = json_columns(&schema, names);
    let mut out = Vec::new();
    let mut rows = JsonRows::new(max_rows, limits.max_result_bytes);
    let io = |e: std::io::Error| StoreError::Query(e.to_string());
    rows.open(&mut out).map_err(io)?;
    for batch in arrow {
        let batch = batch.map_err(|e| StoreError::Query(e.to_string()))?;
        if !rows.write(&batch, &mut out).map_err(io)? {
            break;
        }
    }
    rows.close(&mut out).map_err(io)?;
    let (row_count, truncated_by) = (rows.count, rows.truncated_by);
    let rows_json = String::from_utf8(out).map_err(|e| StoreError::Query(e.to_string()))?;
    Ok(QueryResult { columns, rows_json, row_count, truncated: truncated_by.is_some(), truncated_by, elapsed_ms: 0.0 })
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
