//! Bulk inserts of Arrow record batches without copying their strings (issue 11): the writer's
//! `INSERT INTO <table> (<columns>) SELECT * FROM agent_console_bulk_rows()` scans the batches it
//! handed over (`BulkInsert::insert`) through DuckDB's own Arrow import, whose vectors point into
//! the batches' buffers, and the insert copies each value once, into the transaction.
//!
//! Why not duckdb-rs's appender (what the writer used before): it converts each batch in Rust,
//! copying every string into a DuckDB vector, and the appender copies the vector again into its
//! buffer before the flush inserts it (3 copies; 2.85 us a span row for append + flush in a probe
//! of 819,200 spans in 40-batch transactions, 2.01-2.35 with this scan, identical rows).
//! DuckDB's Arrow import (`duckdb_data_chunk_from_arrow`) is only reachable through its C API,
//! hence `unsafe` code here (the crate's only others: one `mallopt` call in `malloc_arenas.rs`, and
//! `model::ids::Id::as_str` reading an inline id's bytes, copied from a `str`, as one):
//! every block says what it relies on.
//!
//! - The conversion needs a connection only for its settings; it gets one of its own, to a private
//!   in-memory database (never the store's: that connection belongs to the writer's transaction).
//! - The table function reads what the writer handed over for the one statement running; the
//!   hand-over is cleared when it ends, so any other statement finds nothing. Readers cannot call
//!   it: the SQL sandbox's allow-list refuses it.
//! - A column whose converted type is not the declared one is refused with an error, never
//!   referenced (DuckDB treats that as an internal error and invalidates the database).

#![allow(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::ptr::null_mut;
use std::sync::{Arc, Mutex, MutexGuard};

use duckdb::arrow::array::{Array, StructArray};
use duckdb::arrow::datatypes::{DataType, Schema, TimeUnit};
use duckdb::arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::core::{DataChunkHandle, LogicalTypeHandle, LogicalTypeId};
use duckdb::vtab::{BindInfo, InitInfo, TableFunctionInfo, VTab};
use duckdb::{ffi, Connection};

/// The table function's name (not on the SQL sandbox's allow-list).
pub const FUNCTION: &str = "agent_console_bulk_rows";

type BoxError = Box<dyn std::error::Error>;

/// A private in-memory DuckDB and a connection to it: the context the Arrow import runs in.
struct Converter {
    db: ffi::duckdb_database,
    con: ffi::duckdb_connection,
}

// SAFETY: DuckDB databases and connections may be used from any thread; this one is only used
// under `Shared::converter`'s mutex, one call at a time.
unsafe impl Send for Converter {}

impl Converter {
    fn open() -> Result<Self, String> {
        let mut db: ffi::duckdb_database = null_mut();
        let mut con: ffi::duckdb_connection = null_mut();
        let mut config: ffi::duckdb_config = null_mut();
        let mut error: *mut std::os::raw::c_char = null_mut();
        // SAFETY: the config, database and connection out-pointers are valid locals; the C strings
        // are literals; a null path opens an in-memory database; the config is destroyed after the
        // open (DuckDB copies it), an open error's message is copied and freed with `duckdb_free`,
        // and whatever was opened is closed on failure (and by `Drop` otherwise).
        unsafe {
            if ffi::duckdb_create_config(&mut config) != ffi::DuckDBSuccess {
                ffi::duckdb_destroy_config(&mut config);
                return Err("cannot configure the Arrow import's in-memory database".into());
            }
            // One thread: it runs no query of its own (the default starts a worker per core).
            ffi::duckdb_set_config(config, c"threads".as_ptr(), c"1".as_ptr());
            let opened = ffi::duckdb_open_ext(std::ptr::null(), &mut db, config, &mut error);
            ffi::duckdb_destroy_config(&mut config);
            if opened != ffi::DuckDBSuccess {
                let msg = if error.is_null() {
                    String::new()
                } else {
                    let m = std::ffi::CStr::from_ptr(error).to_string_lossy().into_owned();
                    ffi::duckdb_free(error.cast());
                    m
                };
                ffi::duckdb_close(&mut db);
                return Err(format!("cannot open the Arrow import's in-memory database: {msg}"));
            }
            if ffi::duckdb_connect(db, &mut con) != ffi::DuckDBSuccess {
                ffi::duckdb_disconnect(&mut con);
                ffi::duckdb_close(&mut db);
                return Err("cannot connect to the Arrow import's in-memory database".into());
            }
        }
        Ok(Self { db, con })
    }
}

impl Drop for Converter {
    fn drop(&mut self) {
        // SAFETY: both handles came from `open` and are released once, here.
        unsafe {
            ffi::duckdb_disconnect(&mut self.con);
            ffi::duckdb_close(&mut self.db);
        }
    }
}

/// The next statement's rows: its batches and which of their columns the table declares JSON.
type Pending = (Vec<RecordBatch>, Arc<HashSet<String>>);

/// What the writer and the table function share.
struct Shared {
    /// The batches of the statement being run (cleared when it ends).
    pending: Mutex<Option<Pending>>,
    converter: Mutex<Converter>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A converted Arrow schema (`duckdb_arrow_converted_schema`), destroyed with the bind data.
struct Converted(ffi::duckdb_arrow_converted_schema);

// SAFETY: the converted schema is immutable after creation (DuckDB only reads it while
// converting); it is used under the converter's mutex.
unsafe impl Send for Converted {}
unsafe impl Sync for Converted {}

impl Drop for Converted {
    fn drop(&mut self) {
        // SAFETY: created by `duckdb_schema_from_arrow`, destroyed once, here.
        unsafe { ffi::duckdb_destroy_arrow_converted_schema(&mut self.0) };
    }
}

/// Take a DuckDB error's message and free it.
///
/// SAFETY: `err` is a non-null error returned by a DuckDB C API call, not yet destroyed.
unsafe fn take_error(mut err: ffi::duckdb_error_data, what: &str) -> BoxError {
    // SAFETY: per the caller; the message is copied before the error is destroyed.
    let msg = unsafe {
        let m = ffi::duckdb_error_data_message(err);
        let s = if m.is_null() { String::new() } else { std::ffi::CStr::from_ptr(m).to_string_lossy().into_owned() };
        ffi::duckdb_destroy_error_data(&mut err);
        s
    };
    format!("{what}: {msg}").into()
}

/// What a statement was bound to: its columns. The rows are read when it runs (`Init`), so a
/// prepared statement runs again over the next batches of the same columns (`BulkInsert::scan`).
struct Bind {
    shared: Arc<Shared>,
    /// The columns' names and Arrow types (every run's batches must have them).
    fields: Vec<(String, DataType)>,
    converted: Converted,
    /// The declared DuckDB type id of each column (checked against every converted vector).
    type_ids: Vec<ffi::duckdb_type>,
}

/// One run of a statement: the batches handed over for it.
struct Init {
    batches: Vec<RecordBatch>,
    /// (batch, row) of the next chunk.
    cursor: Mutex<(usize, usize)>,
}

/// Do `s`'s columns have `fields`' names and types (in order)? A batch's fields are nullable
/// only if it has a null, so nullability is not compared.
fn same_columns(s: &Schema, fields: &[(String, DataType)]) -> bool {
    s.fields().len() == fields.len()
        && s.fields().iter().zip(fields).all(|(a, (name, dt))| a.name() == name && a.data_type() == dt)
}

struct Rows;

/// The DuckDB type a column of `dt` is declared as (its values are inserted with their own type).
fn logical_type(dt: &DataType) -> Result<LogicalTypeId, String> {
    Ok(match dt {
        DataType::Utf8 => LogicalTypeId::Varchar,
        DataType::Boolean => LogicalTypeId::Boolean,
        DataType::Int32 => LogicalTypeId::Integer,
        DataType::Int64 => LogicalTypeId::Bigint,
        DataType::UInt64 => LogicalTypeId::UBigint,
        DataType::Float64 => LogicalTypeId::Double,
        DataType::Timestamp(TimeUnit::Microsecond, None) => LogicalTypeId::Timestamp,
        other => return Err(format!("bulk insert: Arrow type {other} is not supported")),
    })
}

impl VTab for Rows {
    type BindData = Bind;
    type InitData = Init;

    fn bind(bind: &BindInfo) -> Result<Bind, BoxError> {
        // SAFETY: the extra info is the `Arc<Shared>` given at registration; DuckDB keeps it
        // alive as long as the function is registered, and it is only read here.
        let shared = unsafe { bind.get_extra_info::<Arc<Shared>>().as_ref() }
            .ok_or("bulk insert: the function has no state")?
            .clone();
        // Cloned, not taken: DuckDB may bind a statement more than once (batches are shared
        // buffers; only a run scans them). `BulkInsert::scan` clears it after.
        let (batches, json) = lock(&shared.pending).clone().ok_or("bulk insert: nothing was handed over")?;
        let first = batches.first().ok_or("bulk insert: no batch")?.schema();
        let fields: Vec<(String, DataType)> =
            first.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect();
        if !batches.iter().all(|b| same_columns(&b.schema(), &fields)) {
            return Err("bulk insert: batches of different columns".into());
        }
        let schema =
            Schema::new(first.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>());
        let mut type_ids = Vec::with_capacity(schema.fields().len());
        for f in schema.fields() {
            let id = logical_type(f.data_type())?;
            type_ids.push(id as ffi::duckdb_type);
            let mut t = LogicalTypeHandle::from(id);
            if id == LogicalTypeId::Varchar && json.contains(f.name()) {
                t.set_alias("JSON");
            }
            bind.add_result_column(f.name(), t);
        }
        let ffi_schema = FFI_ArrowSchema::try_from(&schema)?;
        let mut out: ffi::duckdb_arrow_converted_schema = null_mut();
        {
            let conv = lock(&shared.converter);
            // SAFETY: `ffi_schema` is a valid exported Arrow schema that outlives the call (DuckDB
            // reads it and does not take ownership); `out` is a valid local.
            let err = unsafe {
                ffi::duckdb_schema_from_arrow(conv.con, &ffi_schema as *const FFI_ArrowSchema as *mut _, &mut out)
            };
            if !err.is_null() {
                // SAFETY: a non-null error from the call above.
                return Err(unsafe { take_error(err, "bulk insert: Arrow schema") });
            }
        }
        // A hint for this run only (a prepared statement's next runs have their own counts).
        bind.set_cardinality(batches.iter().map(|b| b.num_rows() as u64).sum(), false);
        Ok(Bind { shared, fields, converted: Converted(out), type_ids })
    }

    fn init(info: &InitInfo) -> Result<Init, BoxError> {
        // SAFETY: DuckDB hands the bind data this function's `bind` returned, alive for the
        // statement's life (which outlasts its runs); it is only read here.
        let bind = unsafe { info.get_bind_data::<Bind>().as_ref() }.ok_or("bulk insert: not bound")?;
        let (batches, _) = lock(&bind.shared.pending).clone().ok_or("bulk insert: nothing was handed over")?;
        if !batches.iter().all(|b| same_columns(&b.schema(), &bind.fields)) {
            return Err("bulk insert: the batches' columns are not the ones the statement was prepared for".into());
        }
        Ok(Init { batches, cursor: Mutex::new((0, 0)) })
    }

    fn func(info: &TableFunctionInfo<Self>, output: &mut DataChunkHandle) -> Result<(), BoxError> {
        let bind = info.get_bind_data();
        let init = info.get_init_data();
        let (batch, offset, len) = {
            let mut cur = lock(&init.cursor);
            loop {
                let Some(b) = init.batches.get(cur.0) else {
                    output.set_len(0);
                    return Ok(());
                };
                if cur.1 < b.num_rows() {
                    break;
                }
                *cur = (cur.0 + 1, 0);
            }
            let b = &init.batches[cur.0];
            // SAFETY: reading a DuckDB constant.
            let capacity = unsafe { ffi::duckdb_vector_size() } as usize;
            let len = capacity.min(b.num_rows() - cur.1);
            let at = *cur;
            cur.1 += len;
            (b, at.1, len)
        };
        let slice: StructArray = batch.slice(offset, len).into();
        let mut array = FFI_ArrowArray::new(&slice.to_data());
        let mut chunk: ffi::duckdb_data_chunk = null_mut();
        let conv = lock(&bind.shared.converter);
        // SAFETY: `array` is a valid exported Arrow array of the converted schema's layout;
        // DuckDB takes ownership of it (it sets `release` to null and calls the original release
        // when the last vector referencing it is gone, which frees the Rust buffers). `chunk` is
        // a valid local, destroyed below once its vectors are referenced by the output.
        let err = unsafe {
            ffi::duckdb_data_chunk_from_arrow(
                conv.con,
                &mut array as *mut FFI_ArrowArray as *mut _,
                bind.converted.0,
                &mut chunk,
            )
        };
        drop(conv);
        if !err.is_null() {
            // SAFETY: a non-null error from the call above.
            return Err(unsafe { take_error(err, "bulk insert: Arrow import") });
        }
        let out = output.get_ptr();
        let mut refused = None;
        // SAFETY: `chunk` was just created with one vector per field and `out` is DuckDB's output
        // chunk with one vector per declared column (the same count, from the same schema);
        // vectors are referenced only when their type ids agree, and `Reference` shares the
        // buffers (reference counted), so destroying `chunk` afterwards leaves the output valid.
        unsafe {
            let columns = ffi::duckdb_data_chunk_get_column_count(chunk) as usize;
            if columns != bind.type_ids.len() {
                refused = Some(format!("bulk insert: {columns} columns converted, {} declared", bind.type_ids.len()));
            } else {
                for (i, want) in bind.type_ids.iter().enumerate() {
                    let src = ffi::duckdb_data_chunk_get_vector(chunk, i as u64);
                    let mut t = ffi::duckdb_vector_get_column_type(src);
                    let got = ffi::duckdb_get_type_id(t);
                    ffi::duckdb_destroy_logical_type(&mut t);
                    if got != *want {
                        refused = Some(format!("bulk insert: column {i} converted as type {got}, declared {want}"));
                        break;
                    }
                }
                if refused.is_none() {
                    for i in 0..columns {
                        let src = ffi::duckdb_data_chunk_get_vector(chunk, i as u64);
                        let dst = ffi::duckdb_data_chunk_get_vector(out, i as u64);
                        ffi::duckdb_vector_reference_vector(dst, src);
                    }
                }
            }
            ffi::duckdb_destroy_data_chunk(&mut chunk);
        }
        if let Some(e) = refused {
            return Err(e.into());
        }
        output.set_len(len);
        Ok(())
    }
}

/// The writer's handle: registered once on its connection.
pub struct BulkInsert {
    shared: Arc<Shared>,
    /// Per table, its JSON columns (declared JSON so that the insert needs no validating cast).
    json: HashMap<String, Arc<HashSet<String>>>,
}

impl BulkInsert {
    /// Register the table function on `conn` (the writer's connection), after the migrations.
    pub fn register(conn: &Connection) -> Result<Self, duckdb::Error> {
        let mut json: HashMap<String, HashSet<String>> = HashMap::new();
        let mut stmt = conn.prepare(
            "SELECT table_name, column_name FROM duckdb_columns()
             WHERE database_name = current_database() AND schema_name = 'main' AND data_type = 'JSON'",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (table, column) = row?;
            json.entry(table).or_default().insert(column);
        }
        let converter =
            Converter::open().map_err(|e| duckdb::Error::DuckDBFailure(ffi::Error::new(ffi::DuckDBError), Some(e)))?;
        let shared = Arc::new(Shared { pending: Mutex::new(None), converter: Mutex::new(converter) });
        conn.register_table_function_with_extra_info::<Rows, _>(FUNCTION, &shared)?;
        Ok(Self { shared, json: json.into_iter().map(|(t, c)| (t, Arc::new(c))).collect() })
    }

    /// Insert `batches` (one schema; field names are `table`'s column names) into `table`, inside
    /// the connection's current transaction. Returns the rows inserted.
    pub fn insert(&self, conn: &Connection, table: &str, batches: Vec<RecordBatch>) -> Result<usize, duckdb::Error> {
        let Some(first) = batches.first() else { return Ok(0) };
        let columns: Vec<String> = first.schema().fields().iter().map(|f| format!("\"{}\"", f.name())).collect();
        let sql = format!("INSERT INTO \"{table}\" ({}) SELECT * FROM {FUNCTION}()", columns.join(", "));
        let json = self.json.get(table).cloned().unwrap_or_default();
        self.scan(conn, &sql, batches, json)
    }

    /// Run `sql`, one statement that reads `agent_console_bulk_rows()` once (e.g. an upsert),
    /// over `batches` (one schema, no JSON columns), inside the connection's current transaction.
    /// Returns the rows changed.
    pub fn run(&self, conn: &Connection, sql: &str, batches: Vec<RecordBatch>) -> Result<usize, duckdb::Error> {
        if batches.is_empty() {
            return Ok(0);
        }
        self.scan(conn, sql, batches, Arc::default())
    }

    fn scan(
        &self,
        conn: &Connection,
        sql: &str,
        batches: Vec<RecordBatch>,
        json: Arc<HashSet<String>>,
    ) -> Result<usize, duckdb::Error> {
        *lock(&self.shared.pending) = Some((batches, json));
        // Prepared once per statement text (a table's insert, the rollup's upsert), so parsing,
        // binding and planning are not repeated on every run (inserting in chunks,
        // `--commit-stream-mib`, runs them a few hundred times a second; the gain measured
        // below this box's noise, BENCHMARKS.md). Each run reads the batches handed over for it
        // (`Rows::init`).
        let result = conn.prepare_cached(sql).and_then(|mut stmt| stmt.execute([]));
        lock(&self.shared.pending).take();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::normalize;
    use crate::model::records::Batch;
    use crate::store::arrow_rows;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use prost::Message;

    /// Generated traces (a batch over two DuckDB vectors, a small one, one span) and captured
    /// Claude Code logs and metrics: every bulk table, every column type, nulls.
    fn batches() -> Vec<Batch> {
        let mut rng = crate::fixtures::Rng::new(3);
        let mut out: Vec<Batch> = [3000, 700, 1]
            .into_iter()
            .map(|n| {
                let req = crate::fixtures::genai_traces(n, 20, &mut rng, 1_764_000_000_000_000_000);
                normalize::traces(&req, 1_764_000_000_000_000).batch
            })
            .collect();
        let bytes = |f: &str| crate::fixtures::shared_fixture(f).expect("fixture");
        for f in ["claude-code/otlp/logs-1.pb", "claude-code/otlp/logs-2.pb"] {
            let req = ExportLogsServiceRequest::decode(&bytes(f)[..]).expect("logs");
            out.push(normalize::logs(&req, 1_764_000_000_000_000).batch);
        }
        let req = ExportMetricsServiceRequest::decode(&bytes("claude-code/otlp/metrics-1.pb")[..]).expect("metrics");
        out.push(normalize::metrics(&req, 1_764_000_000_000_000).batch);
        out
    }

    type ToArrow = fn(&Batch) -> Option<RecordBatch>;

    #[test]
    fn bulk_rows_equal_what_the_appender_stores() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = Connection::open_in_memory().expect("db");
        conn.execute_batch(&format!(
            "ATTACH '{}' AS db (ROW_GROUP_SIZE 2048); USE db;",
            dir.path().join("db.duckdb").display()
        ))
        .expect("attach");
        crate::store::schema::migrate(&conn).expect("migrate");
        let bulk = BulkInsert::register(&conn).expect("register");
        let json = |t: &str| bulk.json.get(t).map(|c| c.len()).unwrap_or(0);
        assert_eq!(json("spans"), 4, "attributes, resource_attributes, events, links: {:?}", bulk.json);
        assert!(json("logs") == 2 && json("metric_points") == 3, "{:?}", bulk.json);

        let batches = batches();
        let tables: [(&str, ToArrow); 5] = [
            ("spans", |b| (!b.spans.is_empty()).then(|| arrow_rows::spans(&b.spans).expect("arrow"))),
            ("logs", |b| (!b.logs.is_empty()).then(|| arrow_rows::logs(&b.logs).expect("arrow"))),
            ("metric_points", |b| (!b.points.is_empty()).then(|| arrow_rows::points(&b.points).expect("arrow"))),
            ("model_calls", |b| {
                (!b.model_calls.is_empty()).then(|| arrow_rows::model_calls(&b.model_calls).expect("arrow"))
            }),
            ("tool_calls", |b| {
                (!b.tool_calls.is_empty()).then(|| arrow_rows::tool_calls(&b.tool_calls).expect("arrow"))
            }),
        ];
        for (table, _) in tables {
            conn.execute_batch(&format!("CREATE TABLE {table}_appended AS SELECT * FROM {table} LIMIT 0"))
                .expect("copy");
        }
        conn.execute_batch("BEGIN").expect("begin");
        for (table, to_arrow) in tables {
            let rbs: Vec<RecordBatch> = batches.iter().filter_map(to_arrow).collect();
            let rows: usize = rbs.iter().map(RecordBatch::num_rows).sum();
            assert!(rows > 0, "{table}: no rows in the fixtures");
            let names: Vec<String> = rbs[0].schema().fields().iter().map(|f| f.name().clone()).collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut app = conn.appender_with_columns(&format!("{table}_appended"), &names).expect("appender");
            for rb in &rbs {
                app.append_record_batch(rb.clone()).expect("append");
            }
            app.flush().expect("flush");
            drop(app);
            // Two statements where there are two batches: each scans only its own.
            let (first, rest) = rbs.split_at(1);
            let mut inserted = bulk.insert(&conn, table, first.to_vec()).expect("bulk insert");
            inserted += bulk.insert(&conn, table, rest.to_vec()).expect("bulk insert");
            assert_eq!(inserted, rows, "{table}");
        }
        conn.execute_batch("COMMIT").expect("commit");
        for (table, _) in tables {
            let count = |sql: String| -> i64 { conn.query_row(&sql, [], |r| r.get(0)).expect(&sql) };
            let stored = count(format!("SELECT count(*) FROM {table}"));
            for (a, b) in
                [(table.to_string(), format!("{table}_appended")), (format!("{table}_appended"), table.to_string())]
            {
                let differ = count(format!("SELECT count(*) FROM (SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b})"));
                assert_eq!(differ, 0, "{table}: {differ} of {stored} rows of {a} are not in {b}");
            }
        }
        // Outside an insert the function has nothing to scan.
        let err = conn.query_row(&format!("SELECT count(*) FROM {FUNCTION}()"), [], |r| r.get::<_, i64>(0));
        assert!(err.is_err_and(|e| e.to_string().contains("nothing was handed over")));
    }
}
