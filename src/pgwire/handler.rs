//! Query handling for both protocols. Simple queries are split into statements and answered one
//! after another (RowDescription / DataRow* / CommandComplete each, then one ReadyForQuery;
//! the first error ends the string). Extended queries are described at Parse (vetted and
//! prepared in DuckDB: result columns from a `LIMIT 0` run, parameter types from the query's
//! syntax tree), then bound and executed with parameters. Rows stream from a blocking DuckDB
//! thread in batches, capped at the reader's `max_rows`.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::BytesMut;
use duckdb::arrow::array::RecordBatch;
use duckdb::types::Value;
use duckdb::Connection;
use futures::{Sink, SinkExt, Stream};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{send_ready_for_query, ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ConnectionHandle, PgWireConnectionState, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::{DataRow, FieldDescription, RowDescription};
use pgwire::messages::response::{CommandComplete, EmptyQueryResponse, NoticeResponse, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::PgWireBackendMessage;
use serde_json::Value as Json;
use tokio::sync::mpsc;

use super::chatter::{self, Forget, Plan, Session, TxEffect};
use super::encode::{self, Logical, PgColumn};
use super::sql;
use super::PgError;
use crate::store::reader::{check_type_depth, original_names, prepare_capped, vet, Reader};
use crate::store::stream::send_within;
use crate::store::StoreError;

/// Rows per message batch handed from the DuckDB thread to the connection.
const CHANNEL_DEPTH: usize = 4;

/// A statement prepared with Parse: what to do, its parameter and result types.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub plan: Plan,
    pub params: Vec<Type>,
    pub columns: Vec<PgColumn>,
}

/// Shared by the simple and extended handlers.
pub struct QueryHandler {
    reader: Arc<Reader>,
    parser: Arc<Parser>,
}

impl QueryHandler {
    pub fn new(reader: Arc<Reader>) -> Self {
        Self { parser: Arc::new(Parser { reader: reader.clone() }), reader }
    }
}

pub struct Parser {
    reader: Arc<Reader>,
}

fn session_of<C: ClientInfo + ?Sized>(client: &C) -> Arc<Session> {
    client.session_extensions().get_or_insert_with(Session::default)
}

fn user_error(e: PgError) -> PgWireError {
    e.into()
}

/// Messages from the DuckDB thread. A query's messages end with `Done` or `Error`; a channel that
/// closes without either means the query was cut short (reported as an error, never as a
/// complete result).
enum Msg {
    Header(Vec<PgColumn>),
    Rows(Vec<DataRow>),
    /// A cap cut the result: the NOTICE text.
    Truncated(String),
    Done,
    Error(PgError),
}

/// What a statement's execution needs.
struct Exec {
    sql: String,
    views: Vec<&'static str>,
    params: Vec<Value>,
    /// Described types (extended protocol) the rows must be encoded as.
    described: Option<Vec<Type>>,
    formats: Format,
    max_rows: usize,
    max_bytes: usize,
    send_timeout: std::time::Duration,
}

impl Exec {
    fn new(reader: &Reader, sql: String, views: Vec<&'static str>, params: Vec<Value>, formats: Format) -> Self {
        let limits = reader.limits();
        Exec {
            sql,
            views,
            params,
            described: None,
            formats,
            max_rows: limits.max_rows,
            max_bytes: limits.max_result_bytes,
            send_timeout: limits.send_timeout,
        }
    }
}

/// Run `exec` on a DuckDB thread; the first message is `Header` or `Error`.
fn start(reader: &Arc<Reader>, exec: Exec) -> mpsc::Receiver<Msg> {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let reader = reader.clone();
    let runtime = tokio::runtime::Handle::current();
    tokio::spawn(async move {
        let err_tx = tx.clone();
        let result = reader.with_connection(move |conn| run(conn, exec, &tx, &runtime)).await;
        if let Err(e) = result {
            // Never wait on a client that stopped reading: when the channel is full the error is
            // dropped and the reader sees the channel close without `Done`, which is an error too.
            let _ = err_tx.try_send(Msg::Error(e.into()));
        }
    });
    rx
}

/// The error a query ends with when the client stopped taking rows.
fn stalled(e: std::io::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn run(
    conn: &Connection,
    exec: Exec,
    tx: &mpsc::Sender<Msg>,
    runtime: &tokio::runtime::Handle,
) -> Result<(), StoreError> {
    let Exec { sql, views, params, described, formats, max_rows, max_bytes, send_timeout } = exec;
    let send = |m: Msg| send_within(runtime, tx, m, send_timeout).map_err(stalled);
    create_views(conn, &views)?;
    vet(conn, &sql)?;
    let (mut stmt, _) = prepare_capped(conn, &sql, max_rows)?;
    check_type_depth(&stmt)?;
    let logical = logical_types(&stmt);
    let arrow = stmt.stream_arrow(duckdb::params_from_iter(params.iter())).map_err(query_err)?;
    let schema = arrow.get_schema();
    let names = original_names(conn, &sql, &schema);
    let mut columns = columns_of(&schema, &logical);
    for (c, name) in columns.iter_mut().zip(names) {
        c.name = name;
    }
    if let Some(described) = &described {
        for (c, t) in columns.iter_mut().zip(described) {
            c.ty = t.clone();
        }
    }
    let types: Vec<Type> = columns.iter().map(|c| c.ty.clone()).collect();
    let binary: Vec<bool> = (0..columns.len()).map(|i| formats.is_binary(i)).collect();
    send(Msg::Header(columns))?;
    let mut sent = 0usize;
    let mut bytes = 0usize;
    for batch in arrow {
        let batch = batch.map_err(query_err)?;
        if batch.num_rows() == 0 {
            continue;
        }
        if sent >= max_rows {
            send(Msg::Truncated(format!("result truncated to {max_rows} rows (the server's query_max_rows)")))?;
            break;
        }
        let take = batch.num_rows().min(max_rows - sent);
        let (rows, size, complete) = encode_rows(&batch, take, &types, &binary, max_bytes - bytes);
        sent += rows.len();
        bytes += size;
        if !rows.is_empty() {
            send(Msg::Rows(rows))?;
        }
        if !complete {
            send(Msg::Truncated(format!(
                "result truncated to {sent} rows at {max_bytes} bytes (the server's query_max_bytes)"
            )))?;
            break;
        }
        if take < batch.num_rows() {
            send(Msg::Truncated(format!("result truncated to {max_rows} rows (the server's query_max_rows)")))?;
            break;
        }
    }
    send(Msg::Done)
}

fn query_err(e: duckdb::Error) -> StoreError {
    StoreError::Query(e.to_string())
}

fn create_views(conn: &Connection, views: &[&str]) -> Result<(), StoreError> {
    for v in views {
        if let Some(sql) = chatter::stand_in_sql(v) {
            conn.execute_batch(&sql).map_err(query_err)?;
        }
    }
    Ok(())
}

fn logical_types(stmt: &duckdb::Statement<'_>) -> Vec<Logical> {
    use duckdb::core::LogicalTypeId;
    (0..stmt.column_count())
        .map(|i| {
            let t = stmt.column_logical_type(i);
            Logical {
                json: t.get_alias().is_some_and(|a| a.eq_ignore_ascii_case("json")),
                uuid: matches!(t.try_id(), Ok(LogicalTypeId::Uuid)),
            }
        })
        .collect()
}

fn columns_of(schema: &duckdb::arrow::datatypes::Schema, logical: &[Logical]) -> Vec<PgColumn> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let (ty, typmod) = encode::pg_type(f.data_type(), logical.get(i).copied().unwrap_or_default());
            PgColumn { name: f.name().clone(), ty, typmod }
        })
        .collect()
}

/// Encode up to `take` rows of `batch` into DataRows while they fit in `budget` bytes. Returns the
/// rows, their size and whether all `take` rows fit.
fn encode_rows(
    batch: &RecordBatch,
    take: usize,
    types: &[Type],
    binary: &[bool],
    budget: usize,
) -> (Vec<DataRow>, usize, bool) {
    let cols = batch.columns();
    let mut rows = Vec::with_capacity(take);
    let mut buf = BytesMut::with_capacity(256);
    let mut size = 0usize;
    for i in 0..take {
        for (c, col) in cols.iter().enumerate() {
            let ty = types.get(c).unwrap_or(&Type::TEXT);
            encode::put_cell(&mut buf, col.as_ref(), i, ty, binary.get(c).copied().unwrap_or(false));
        }
        let row_size = buf.len() + 7;
        if size + row_size > budget {
            return (rows, size, false);
        }
        size += row_size;
        rows.push(DataRow::new(buf.split(), cols.len() as i16));
    }
    (rows, size, true)
}

fn field_infos(columns: &[PgColumn], formats: Option<&Format>) -> Vec<FieldInfo> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let format = formats.map(|f| f.format_for(i)).unwrap_or(FieldFormat::Text);
            FieldInfo::new(c.name.clone(), None, None, c.ty.clone(), format).with_type_modifier(c.typmod)
        })
        .collect()
}

fn row_description(columns: &[PgColumn]) -> RowDescription {
    RowDescription::new(
        columns
            .iter()
            .map(|c| FieldDescription::new(c.name.clone(), 0, 0, c.ty.oid(), type_size(&c.ty), c.typmod, 0))
            .collect(),
    )
}

fn type_size(t: &Type) -> i16 {
    match *t {
        Type::BOOL => 1,
        Type::INT2 => 2,
        Type::INT4 | Type::FLOAT4 | Type::DATE => 4,
        Type::INT8 | Type::FLOAT8 | Type::TIMESTAMP | Type::TIMESTAMPTZ | Type::TIME => 8,
        Type::INTERVAL | Type::UUID => 16,
        _ => -1,
    }
}

/// Results computed without user SQL (canned answers, Grafana catalogue listings).
async fn computed(reader: &Arc<Reader>, plan: &Plan) -> Result<Option<RecordBatch>, PgError> {
    Ok(Some(match plan {
        Plan::Rows(batch) => batch.clone(),
        Plan::GrafanaTables => {
            let rows = reader
                .query_objects(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' \
                     AND table_catalog = current_database() ORDER BY table_name",
                    Vec::new(),
                )
                .await?;
            let names: Vec<String> =
                rows.iter().filter_map(|r| r.get("table_name").and_then(Json::as_str)).map(sql::quote_ident).collect();
            chatter::text_batch(&["table"], vec![names])
        }
        Plan::GrafanaColumns { schema, table } => {
            let rows = reader
                .query_objects(
                    "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? \
                     AND table_schema = coalesce(?, 'main') AND table_catalog = current_database() \
                     ORDER BY ordinal_position",
                    vec![Some(table.clone()), schema.clone()],
                )
                .await?;
            let mut names = Vec::new();
            let mut types = Vec::new();
            for r in &rows {
                names.push(sql::quote_ident(r.get("column_name").and_then(Json::as_str).unwrap_or_default()));
                types.push(encode::pg_type_name(r.get("data_type").and_then(Json::as_str).unwrap_or_default()));
            }
            chatter::text_batch(&["column", "type"], vec![names, types])
        }
        _ => return Ok(None),
    }))
}

fn computed_columns(batch: &RecordBatch) -> Vec<PgColumn> {
    columns_of(&batch.schema(), &[])
}

/// One statement of a simple query, answered on `client`. Returns the new transaction status.
async fn simple_statement<C>(
    reader: &Arc<Reader>,
    client: &mut C,
    stmt: &str,
    status: TransactionStatus,
) -> Result<TransactionStatus, PgWireError>
where
    C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::PortalStore: PortalStore,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let session = session_of(client);
    let plan = chatter::plan(stmt, &session);
    match plan {
        Plan::Empty => {
            client.feed(PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new())).await?;
            Ok(status)
        }
        Plan::Command { tag, tx, forget } => {
            if let Forget::One(name) = &forget {
                client.portal_store().rm_statement(name);
            }
            client.feed(PgWireBackendMessage::CommandComplete(CommandComplete::new(tag))).await?;
            Ok(match tx {
                TxEffect::None => status,
                TxEffect::Begin => status.to_in_transaction_state(),
                TxEffect::End => status.to_idle_state(),
            })
        }
        Plan::Refuse { code, message } => Err(user_error(PgError::Sql { code, message })),
        Plan::Query { sql, views } => {
            let exec = Exec::new(reader, sql, views, Vec::new(), Format::UnifiedText);
            let mut rx = start(reader, exec);
            let cancel = cancel_receiver(client).await;
            stream_simple(client, &mut rx, cancel).await?;
            Ok(status)
        }
        other => {
            let batch = computed(reader, &other)
                .await
                .map_err(user_error)?
                .unwrap_or_else(|| chatter::text_batch(&[], Vec::new()));
            let columns = computed_columns(&batch);
            client.feed(PgWireBackendMessage::RowDescription(row_description(&columns))).await?;
            let types: Vec<Type> = columns.iter().map(|c| c.ty.clone()).collect();
            let (rows, _, _) = encode_rows(&batch, batch.num_rows(), &types, &[], usize::MAX);
            let n = rows.len();
            for r in rows {
                client.feed(PgWireBackendMessage::DataRow(r)).await?;
            }
            client.feed(PgWireBackendMessage::CommandComplete(Tag::new("SELECT").with_rows(n).into())).await?;
            Ok(status)
        }
    }
}

async fn cancel_receiver<C: ClientInfo>(client: &C) -> Option<futures::channel::oneshot::Receiver<()>> {
    let handle = client.session_extensions().get::<Arc<ConnectionHandle>>()?;
    Some(handle.start_query().await)
}

/// A query whose worker stopped without a result or an error (e.g. cancelled for a client that
/// stopped reading).
fn ended_early() -> PgError {
    PgError::Sql { code: "57014", message: "the query ended before its result was complete".into() }
}

/// Relay one running query to a simple-protocol client.
async fn stream_simple<C>(
    client: &mut C,
    rx: &mut mpsc::Receiver<Msg>,
    mut cancel: Option<futures::channel::oneshot::Receiver<()>>,
) -> Result<(), PgWireError>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let mut rows = 0usize;
    loop {
        let msg = match cancel.as_mut() {
            Some(c) => tokio::select! {
                m = rx.recv() => m,
                r = c => match r {
                    Ok(()) => return Err(user_error(PgError::Sql { code: "57014", message: "canceling statement due to user request".into() })),
                    Err(_) => { cancel = None; continue; }
                },
            },
            None => rx.recv().await,
        };
        match msg {
            Some(Msg::Header(columns)) => {
                client.feed(PgWireBackendMessage::RowDescription(row_description(&columns))).await?;
            }
            Some(Msg::Rows(batch)) => {
                rows += batch.len();
                for r in batch {
                    client.feed(PgWireBackendMessage::DataRow(r)).await?;
                }
            }
            Some(Msg::Truncated(notice)) => {
                let info = ErrorInfo::new("WARNING".into(), "01000".into(), notice);
                client.feed(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(info))).await?;
            }
            Some(Msg::Done) => break,
            Some(Msg::Error(e)) => return Err(user_error(e)),
            None => return Err(user_error(ended_early())),
        }
    }
    client.feed(PgWireBackendMessage::CommandComplete(Tag::new("SELECT").with_rows(rows).into())).await?;
    Ok(())
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let mut status = client.transaction_status();
        // The same SQL size cap as HTTP; the connection stays usable.
        if let Err(e) = self.reader.check_size(&query.query) {
            let info: ErrorInfo = user_error(e.into()).into();
            client.feed(PgWireBackendMessage::ErrorResponse(info.into())).await?;
            client.set_state(PgWireConnectionState::ReadyForQuery);
            let status = status.to_error_state();
            client.set_transaction_status(status);
            return send_ready_for_query(client, status).await;
        }
        let statements = sql::split(&query.query);
        if statements.is_empty() {
            client.feed(PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new())).await?;
        }
        for s in statements {
            match simple_statement(&self.reader, client, &s.text, status).await {
                Ok(st) => status = st,
                Err(e) => {
                    tracing::debug!(error = %e, "postgres query failed");
                    let info: ErrorInfo = e.into();
                    client.feed(PgWireBackendMessage::ErrorResponse(info.into())).await?;
                    status = status.to_error_state();
                    break;
                }
            }
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(status);
        send_ready_for_query(client, status).await
    }

    async fn do_query<C>(&self, _client: &mut C, _query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // `on_query` answers statement by statement and never calls this.
        Err(user_error(PgError::Sql { code: "XX000", message: "unexpected simple query path".into() }))
    }
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(&self, client: &C, sql_text: &str, types: &[Option<Type>]) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        self.reader.check_size(sql_text).map_err(|e| user_error(e.into()))?;
        let statements = sql::split(sql_text);
        let stmt = match statements.as_slice() {
            [] => return Ok(None),
            [one] => one.text.clone(),
            _ => {
                return Err(user_error(PgError::Sql {
                    code: "42601",
                    message: "cannot insert multiple commands into a prepared statement".into(),
                }))
            }
        };
        let session = session_of(client);
        let plan = chatter::plan(&stmt, &session);
        let (columns, params) = match &plan {
            Plan::Empty => return Ok(None),
            Plan::Refuse { code, message } => return Err(user_error(PgError::Sql { code, message: message.clone() })),
            Plan::Command { .. } => (Vec::new(), Vec::new()),
            Plan::Rows(batch) => (computed_columns(batch), Vec::new()),
            Plan::GrafanaTables => (text_columns(&["table"]), Vec::new()),
            Plan::GrafanaColumns { .. } => (text_columns(&["column", "type"]), Vec::new()),
            Plan::Query { sql, views } => {
                let (sql, views) = (sql.clone(), views.clone());
                let declared = types.to_vec();
                self.reader
                    .with_connection(move |conn| describe(conn, &sql, &views, &declared))
                    .await
                    .map_err(|e| user_error(e.into()))?
            }
        };
        Ok(Some(Prepared { plan, params, columns }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt.params.clone())
    }

    fn get_result_schema(&self, stmt: &Prepared, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        Ok(field_infos(&stmt.columns, format))
    }
}

fn text_columns(names: &[&str]) -> Vec<PgColumn> {
    names.iter().map(|n| PgColumn { name: n.to_string(), ty: Type::TEXT, typmod: -1 }).collect()
}

/// Vet and prepare `sql`; result columns from a `LIMIT 0` run with NULL parameters, parameter
/// types from the client's declarations or the syntax tree.
fn describe(
    conn: &Connection,
    sql: &str,
    views: &[&str],
    declared: &[Option<Type>],
) -> Result<(Vec<PgColumn>, Vec<Type>), StoreError> {
    create_views(conn, views)?;
    vet(conn, sql)?;
    let stmt = conn.prepare(sql).map_err(query_err)?;
    check_type_depth(&stmt)?;
    let nparams = stmt.parameter_count();
    let logical = logical_types(&stmt);
    drop(stmt);
    let nulls = vec![Value::Null; nparams];
    let wrapped = format!("SELECT * FROM ({sql}\n) AS pgwire_describe LIMIT 0");
    let schema = match conn.prepare(&wrapped) {
        Ok(mut w) => match w.query_arrow(duckdb::params_from_iter(nulls.iter())) {
            Ok(a) => Some(a.get_schema()),
            Err(_) => None,
        },
        Err(_) => None,
    };
    let schema = match schema {
        Some(s) => s,
        None => {
            // Not a subquery (rare): start it streaming for its schema, fetching nothing.
            let mut s = conn.prepare(sql).map_err(query_err)?;
            let a = s.stream_arrow(duckdb::params_from_iter(nulls.iter())).map_err(query_err)?;
            a.get_schema()
        }
    };
    let columns = columns_of(&schema, &logical);
    let inferred = if nparams > 0 { infer_params(conn, sql) } else { HashMap::new() };
    let params = (1..=nparams)
        .map(|n| {
            declared
                .get(n - 1)
                .cloned()
                .flatten()
                .filter(|t| *t != Type::UNKNOWN)
                .or_else(|| inferred.get(&n).cloned())
                .unwrap_or(Type::TEXT)
        })
        .collect();
    Ok((columns, params))
}

/// Parameter types from DuckDB's syntax tree: `col op $n`, `$n::type`, `col BETWEEN $a AND $b`,
/// `col IN ($a, ...)`, `LIMIT $n`. Column types come from the tables the query names.
fn infer_params(conn: &Connection, sql: &str) -> HashMap<usize, Type> {
    let mut out = HashMap::new();
    let Ok(ast) = conn.query_row("SELECT json_serialize_sql(?::VARCHAR)::VARCHAR", [sql], |r| r.get::<_, String>(0))
    else {
        return out;
    };
    let Ok(ast) = serde_json::from_str::<Json>(&ast) else { return out };
    let mut tables = Vec::new();
    collect_tables(&ast, &mut tables, 0);
    let mut cols: HashMap<String, Type> = HashMap::new();
    if !tables.is_empty() {
        let list = tables.iter().map(|t| sql::quote_str(t)).collect::<Vec<_>>().join(", ");
        let q = format!(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name IN ({list}) \
             AND table_catalog = current_database()"
        );
        if let Ok(mut stmt) = conn.prepare(&q) {
            if let Ok(rows) = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))) {
                for (name, ty) in rows.flatten() {
                    cols.entry(name.to_ascii_lowercase()).or_insert_with(|| param_type_for(&ty));
                }
            }
        }
    }
    walk_params(&ast, &cols, &mut out, 0);
    out
}

fn collect_tables(v: &Json, out: &mut Vec<String>, depth: usize) {
    if depth > 256 {
        return;
    }
    match v {
        Json::Object(m) => {
            if m.get("type").and_then(Json::as_str) == Some("BASE_TABLE") {
                if let Some(t) = m.get("table_name").and_then(Json::as_str) {
                    out.push(t.to_string());
                }
            }
            m.values().for_each(|c| collect_tables(c, out, depth + 1));
        }
        Json::Array(a) => a.iter().for_each(|c| collect_tables(c, out, depth + 1)),
        _ => {}
    }
}

fn param_index(e: &Json) -> Option<usize> {
    (e.get("class").and_then(Json::as_str) == Some("PARAMETER"))
        .then(|| e.get("identifier").and_then(Json::as_str).and_then(|s| s.parse().ok()))
        .flatten()
}

fn expr_type(e: &Json, cols: &HashMap<String, Type>) -> Option<Type> {
    match e.get("class").and_then(Json::as_str)? {
        "COLUMN_REF" => {
            let name = e.get("column_names")?.as_array()?.last()?.as_str()?;
            cols.get(&name.to_ascii_lowercase()).cloned()
        }
        "CAST" => cast_type(e),
        _ => None,
    }
}

fn cast_type(e: &Json) -> Option<Type> {
    let name = e.get("type_expr").and_then(|t| t.get("type_name")).and_then(Json::as_str)?;
    Some(param_type_for(name))
}

fn walk_params(v: &Json, cols: &HashMap<String, Type>, out: &mut HashMap<usize, Type>, depth: usize) {
    if depth > 256 {
        return;
    }
    match v {
        Json::Object(m) => {
            let mut assign = |p: Option<usize>, t: Option<Type>| {
                if let (Some(p), Some(t)) = (p, t) {
                    out.entry(p).or_insert(t);
                }
            };
            match m.get("class").and_then(Json::as_str) {
                Some("COMPARISON") => {
                    if let (Some(l), Some(r)) = (m.get("left"), m.get("right")) {
                        assign(param_index(r), expr_type(l, cols));
                        assign(param_index(l), expr_type(r, cols));
                    }
                }
                Some("BETWEEN") => {
                    if let Some(input) = m.get("input") {
                        let t = expr_type(input, cols);
                        for k in ["lower", "upper"] {
                            assign(m.get(k).and_then(param_index), t.clone());
                        }
                    }
                }
                Some("OPERATOR") => {
                    let ty = m.get("type").and_then(Json::as_str).unwrap_or_default();
                    if ty == "COMPARE_IN" || ty == "COMPARE_NOT_IN" {
                        if let Some(children) = m.get("children").and_then(Json::as_array) {
                            let t = children.first().and_then(|c| expr_type(c, cols));
                            for c in children.iter().skip(1) {
                                assign(param_index(c), t.clone());
                            }
                        }
                    }
                }
                Some("CAST") => assign(m.get("child").and_then(param_index), cast_type(v)),
                _ => {}
            }
            if m.get("type").and_then(Json::as_str) == Some("LIMIT_MODIFIER") {
                for k in ["limit", "offset"] {
                    assign(m.get(k).and_then(param_index), Some(Type::INT8));
                }
            }
            m.values().for_each(|c| walk_params(c, cols, out, depth + 1));
        }
        Json::Array(a) => a.iter().for_each(|c| walk_params(c, cols, out, depth + 1)),
        _ => {}
    }
}

/// The Postgres type a parameter of this DuckDB type is described as.
fn param_type_for(duckdb_type: &str) -> Type {
    let u = duckdb_type.trim().to_ascii_uppercase();
    match u.as_str() {
        "BIGINT" | "INT8" | "LONG" | "UINTEGER" => Type::INT8,
        "INTEGER" | "INT" | "INT4" | "SIGNED" | "USMALLINT" => Type::INT4,
        "SMALLINT" | "INT2" | "SHORT" | "TINYINT" | "INT1" | "UTINYINT" => Type::INT2,
        "UBIGINT" | "HUGEINT" | "UHUGEINT" | "NUMERIC" | "DECIMAL" => Type::NUMERIC,
        "DOUBLE" | "FLOAT8" | "DOUBLE PRECISION" => Type::FLOAT8,
        "FLOAT" | "REAL" | "FLOAT4" => Type::FLOAT4,
        "BOOLEAN" | "BOOL" | "LOGICAL" => Type::BOOL,
        // Stored times are UTC instants (plain TIMESTAMP only for want of ICU): described as timestamptz.
        "TIMESTAMP WITH TIME ZONE" | "TIMESTAMPTZ" | "TIMESTAMP" | "DATETIME" | "TIMESTAMP WITHOUT TIME ZONE" => {
            Type::TIMESTAMPTZ
        }
        "DATE" => Type::DATE,
        "JSON" => Type::JSON,
        "BLOB" | "BYTEA" => Type::BYTEA,
        "INTERVAL" => Type::INTERVAL,
        _ if u.starts_with("DECIMAL") || u.starts_with("NUMERIC") => Type::NUMERIC,
        _ => Type::TEXT,
    }
}

/// Bound parameters of a portal as DuckDB values.
fn bind_params(portal: &Portal<Prepared>) -> Result<Vec<Value>, PgError> {
    let stmt = &portal.statement;
    (0..portal.parameter_len())
        .map(|i| {
            let ty = stmt
                .parameter_types
                .get(i)
                .cloned()
                .flatten()
                .filter(|t| *t != Type::UNKNOWN)
                .or_else(|| stmt.statement.params.get(i).cloned())
                .unwrap_or(Type::TEXT);
            let raw = portal.parameters.get(i).and_then(|p| p.as_deref());
            encode::param_value(raw, &ty, portal.parameter_format.is_binary(i))
                .map_err(|m| PgError::Sql { code: "22P02", message: format!("parameter ${}: {m}", i + 1) })
        })
        .collect()
}

/// Rows of a running query as a stream (extended protocol).
fn row_stream(rx: mpsc::Receiver<Msg>) -> impl Stream<Item = PgWireResult<DataRow>> + Send {
    futures::stream::unfold((rx, VecDeque::new(), false), |(mut rx, mut buf, done)| async move {
        loop {
            if let Some(r) = buf.pop_front() {
                return Some((Ok(r), (rx, buf, done)));
            }
            if done {
                return None;
            }
            match rx.recv().await {
                Some(Msg::Rows(rows)) => buf.extend(rows),
                Some(Msg::Error(e)) => return Some((Err(user_error(e)), (rx, buf, true))),
                Some(Msg::Header(_)) | Some(Msg::Truncated(_)) => {}
                Some(Msg::Done) => return None,
                None => return Some((Err(user_error(ended_early())), (rx, buf, true))),
            }
        }
    })
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Prepared>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        match &prepared.plan {
            Plan::Empty => Ok(Response::EmptyQuery),
            Plan::Command { tag, tx, forget } => {
                if let Forget::One(name) = forget {
                    client.portal_store().rm_statement(name);
                }
                let tag = Tag::new(tag);
                Ok(match tx {
                    TxEffect::None => Response::Execution(tag),
                    TxEffect::Begin => Response::TransactionStart(tag),
                    TxEffect::End => Response::TransactionEnd(tag),
                })
            }
            Plan::Refuse { code, message } => Err(user_error(PgError::Sql { code, message: message.clone() })),
            Plan::Query { sql, views } => {
                let params = bind_params(portal).map_err(user_error)?;
                let mut exec =
                    Exec::new(&self.reader, sql.clone(), views.clone(), params, portal.result_column_format.clone());
                exec.described = Some(prepared.columns.iter().map(|c| c.ty.clone()).collect());
                let mut rx = start(&self.reader, exec);
                match rx.recv().await {
                    Some(Msg::Header(columns)) => {
                        let fields = Arc::new(field_infos(&columns, Some(&portal.result_column_format)));
                        Ok(Response::Query(QueryResponse::new(fields, row_stream(rx))))
                    }
                    Some(Msg::Error(e)) => Err(user_error(e)),
                    _ => Err(user_error(PgError::Sql { code: "XX000", message: "query ended early".into() })),
                }
            }
            plan => {
                let batch = computed(&self.reader, plan)
                    .await
                    .map_err(user_error)?
                    .unwrap_or_else(|| chatter::text_batch(&[], Vec::new()));
                let columns = computed_columns(&batch);
                let types: Vec<Type> = columns.iter().map(|c| c.ty.clone()).collect();
                let binary: Vec<bool> = (0..columns.len()).map(|i| portal.result_column_format.is_binary(i)).collect();
                let (rows, _, _) = encode_rows(&batch, batch.num_rows(), &types, &binary, usize::MAX);
                let fields = Arc::new(field_infos(&columns, Some(&portal.result_column_format)));
                Ok(Response::Query(QueryResponse::new(fields, futures::stream::iter(rows.into_iter().map(Ok)))))
            }
        }
    }
}
