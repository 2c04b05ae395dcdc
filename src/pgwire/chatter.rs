//! Session and catalogue chatter. Clients send `SET`, `SHOW`, `BEGIN`, `current_setting(...)`,
//! `version()` and `pg_catalog` / `information_schema` probes that DuckDB cannot (or must not)
//! run: each statement is classified here into a canned answer, a command tag, a refusal, or SQL
//! (rewritten where needed) for DuckDB. Grafana's table and column listings are recognised and
//! answered from DuckDB's catalogue with Postgres type names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use duckdb::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use duckdb::arrow::datatypes::{DataType, Field, Schema};

use super::sql::{self, Tok};

/// What `server_version` says.
pub const SERVER_VERSION: &str = "16.0 (agent-console)";

/// Settings every client may read (`SHOW`, `current_setting`, ParameterStatus), by lower-case
/// name: (display name, value).
const DEFAULTS: &[(&str, &str, &str)] = &[
    ("server_version", "server_version", SERVER_VERSION),
    ("server_version_num", "server_version_num", "160000"),
    ("server_encoding", "server_encoding", "UTF8"),
    ("client_encoding", "client_encoding", "UTF8"),
    ("datestyle", "DateStyle", "ISO, MDY"),
    ("timezone", "TimeZone", "UTC"),
    ("log_timezone", "log_timezone", "UTC"),
    ("intervalstyle", "IntervalStyle", "postgres"),
    ("integer_datetimes", "integer_datetimes", "on"),
    ("standard_conforming_strings", "standard_conforming_strings", "on"),
    ("transaction_isolation", "transaction_isolation", "read committed"),
    ("default_transaction_isolation", "default_transaction_isolation", "read committed"),
    ("transaction_read_only", "transaction_read_only", "on"),
    ("default_transaction_read_only", "default_transaction_read_only", "on"),
    ("transaction_deferrable", "transaction_deferrable", "off"),
    ("default_transaction_deferrable", "default_transaction_deferrable", "off"),
    ("in_hot_standby", "in_hot_standby", "off"),
    ("search_path", "search_path", "main"),
    ("application_name", "application_name", ""),
    ("is_superuser", "is_superuser", "off"),
    ("session_authorization", "session_authorization", "agent_console"),
    ("max_identifier_length", "max_identifier_length", "63"),
    ("statement_timeout", "statement_timeout", "0"),
    ("lock_timeout", "lock_timeout", "0"),
    ("idle_in_transaction_session_timeout", "idle_in_transaction_session_timeout", "0"),
    ("extra_float_digits", "extra_float_digits", "1"),
    ("client_min_messages", "client_min_messages", "notice"),
    ("bytea_output", "bytea_output", "hex"),
    ("lc_collate", "lc_collate", "C.UTF-8"),
    ("lc_ctype", "lc_ctype", "C.UTF-8"),
    ("lc_messages", "lc_messages", "C.UTF-8"),
    ("lc_monetary", "lc_monetary", "C.UTF-8"),
    ("lc_numeric", "lc_numeric", "C.UTF-8"),
    ("lc_time", "lc_time", "C.UTF-8"),
    ("max_connections", "max_connections", "100"),
    ("block_size", "block_size", "8192"),
    ("default_text_search_config", "default_text_search_config", "pg_catalog.english"),
    ("jit", "jit", "off"),
    ("ssl", "ssl", "off"),
];

/// Other Postgres session settings accepted by `SET` as no-ops.
const SETTABLE: &[&str] = &[
    "work_mem",
    "maintenance_work_mem",
    "temp_buffers",
    "row_security",
    "synchronous_commit",
    "geqo",
    "random_page_cost",
    "seq_page_cost",
    "effective_cache_size",
    "enable_seqscan",
    "enable_indexscan",
    "enable_hashjoin",
    "enable_mergejoin",
    "enable_nestloop",
    "enable_bitmapscan",
    "log_statement",
    "log_min_duration_statement",
    "cursor_tuple_fraction",
    "default_statistics_target",
    "plan_cache_mode",
    "max_parallel_workers_per_gather",
    "constraint_exclusion",
    "from_collapse_limit",
    "join_collapse_limit",
    "check_function_bodies",
    "array_nulls",
    "backslash_quote",
    "escape_string_warning",
    "quote_all_identifiers",
    "tcp_keepalives_idle",
    "tcp_keepalives_interval",
    "tcp_keepalives_count",
    "timezone_abbreviations",
    "xmloption",
    "role",
    "names",
];

/// Most distinct settings one connection may hold (`SET my.x = ..` accepts any dotted name).
pub const MAX_SETTINGS: usize = 128;
/// Longest setting name plus value, in bytes.
pub const MAX_SETTING_BYTES: usize = 4096;

/// Per-connection session state: values set with `SET` (bounded: `MAX_SETTINGS` names of at most
/// `MAX_SETTING_BYTES` each).
#[derive(Debug, Default)]
pub struct Session {
    values: Mutex<HashMap<String, String>>,
}

impl Session {
    /// Current value of a setting (case-insensitive), `None` when unknown.
    pub fn get(&self, name: &str) -> Option<String> {
        let key = name.trim().to_ascii_lowercase();
        if key == "version()" {
            return Some(version_string());
        }
        if let Some(v) = self.values.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Some(v);
        }
        DEFAULTS.iter().find(|(k, _, _)| *k == key).map(|(_, _, v)| v.to_string())
    }

    /// Set (or with `None` reset) a setting; refuses past the per-connection bounds.
    fn set(&self, name: &str, value: Option<String>) -> Result<(), String> {
        let Ok(mut m) = self.values.lock() else { return Ok(()) };
        match value {
            Some(v) => {
                if name.len() + v.len() > MAX_SETTING_BYTES {
                    return Err(format!(
                        "setting \"{}\" is {} bytes, the limit is {MAX_SETTING_BYTES}",
                        name.chars().take(64).collect::<String>(),
                        name.len() + v.len()
                    ));
                }
                if !m.contains_key(name) && m.len() >= MAX_SETTINGS {
                    return Err(format!("a connection may hold at most {MAX_SETTINGS} settings"));
                }
                m.insert(name.to_string(), v);
            }
            None => {
                m.remove(name);
            }
        }
        Ok(())
    }

    fn reset_all(&self) {
        if let Ok(mut m) = self.values.lock() {
            m.clear();
        }
    }
}

/// `SELECT version()`.
pub fn version_string() -> String {
    format!("PostgreSQL {SERVER_VERSION} on DuckDB, agent-console {}, 64-bit", env!("CARGO_PKG_VERSION"))
}

/// ParameterStatus values sent after authentication.
pub fn startup_parameters() -> Vec<(String, String)> {
    [
        "server_version",
        "server_encoding",
        "client_encoding",
        "datestyle",
        "timezone",
        "intervalstyle",
        "integer_datetimes",
        "standard_conforming_strings",
        "is_superuser",
        "default_transaction_read_only",
        "in_hot_standby",
        "application_name",
    ]
    .iter()
    .filter_map(|k| DEFAULTS.iter().find(|(key, _, _)| key == k))
    .map(|(_, display, v)| (display.to_string(), v.to_string()))
    .collect()
}

/// Effect of a command on the transaction state reported in ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxEffect {
    None,
    Begin,
    End,
}

/// What to do with one statement.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Only comments: EmptyQueryResponse.
    Empty,
    /// Answer with a command tag and touch nothing.
    Command { tag: String, tx: TxEffect, forget: Forget },
    /// A canned result.
    Rows(RecordBatch),
    /// Grafana's table list.
    GrafanaTables,
    /// Grafana's column list of one table.
    GrafanaColumns { schema: Option<String>, table: String },
    /// Run on DuckDB (after vetting); `views` are catalogue stand-ins to create first.
    Query { sql: String, views: Vec<&'static str> },
    /// Refuse with this SQLSTATE.
    Refuse { code: &'static str, message: String },
}

/// Prepared statements a command drops (`DEALLOCATE`, `DISCARD ALL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forget {
    Nothing,
    All,
    One(String),
}

fn command(tag: &str) -> Plan {
    Plan::Command { tag: tag.to_string(), tx: TxEffect::None, forget: Forget::Nothing }
}

fn refuse(code: &'static str, message: impl Into<String>) -> Plan {
    Plan::Refuse { code, message: message.into() }
}

/// Statements that would change the database.
const WRITES: &[&str] = &[
    "insert",
    "update",
    "delete",
    "merge",
    "upsert",
    "replace",
    "create",
    "drop",
    "alter",
    "truncate",
    "grant",
    "revoke",
    "vacuum",
    "analyze",
    "reindex",
    "cluster",
    "comment",
    "refresh",
    "lock",
    "security",
    "import",
    "export",
    "checkpoint",
    "call",
    "do",
    "prepare",
    "execute",
    "declare",
    "fetch",
    "move",
    "reassign",
    "notify",
];

/// Classify one statement (already split; may hold comments).
pub fn plan(stmt: &str, session: &Session) -> Plan {
    let norm = sql::normalize(stmt);
    if norm.is_empty() {
        return Plan::Empty;
    }
    let words: Vec<&str> = norm.split(' ').collect();
    let first = words[0];
    match first {
        "set" => return plan_set(stmt, &words, session),
        "reset" => {
            match words.get(1).copied() {
                Some("all") | None => session.reset_all(),
                Some(name) => {
                    let _ = session.set(&name.replace('"', "").to_ascii_lowercase(), None);
                }
            }
            return command("RESET");
        }
        "show" => return plan_show(&words, session),
        "begin" | "start" => {
            return Plan::Command { tag: "BEGIN".into(), tx: TxEffect::Begin, forget: Forget::Nothing }
        }
        "commit" | "end" => return Plan::Command { tag: "COMMIT".into(), tx: TxEffect::End, forget: Forget::Nothing },
        "rollback" | "abort" => {
            let to = words.get(1).is_some_and(|w| *w == "to") || words.get(2).is_some_and(|w| *w == "to");
            let tx = if to { TxEffect::None } else { TxEffect::End };
            return Plan::Command { tag: "ROLLBACK".into(), tx, forget: Forget::Nothing };
        }
        "savepoint" => return command("SAVEPOINT"),
        "release" => return command("RELEASE"),
        "discard" => {
            let what = words.get(1).map(|w| w.to_ascii_uppercase()).unwrap_or_else(|| "ALL".into());
            if what == "ALL" {
                session.reset_all();
            }
            let forget = if what == "ALL" || what == "PLANS" { Forget::All } else { Forget::Nothing };
            return Plan::Command { tag: format!("DISCARD {what}"), tx: TxEffect::None, forget };
        }
        "deallocate" => {
            let rest: Vec<&str> = words[1..].iter().copied().filter(|w| *w != "prepare").collect();
            return match rest.first() {
                Some(&"all") | None => {
                    Plan::Command { tag: "DEALLOCATE ALL".into(), tx: TxEffect::None, forget: Forget::All }
                }
                Some(name) => Plan::Command {
                    tag: "DEALLOCATE".into(),
                    tx: TxEffect::None,
                    forget: Forget::One(name.trim_matches('"').to_string()),
                },
            };
        }
        "listen" => return command("LISTEN"),
        "unlisten" => return command("UNLISTEN"),
        "close" => return command("CLOSE CURSOR"),
        "copy" => {
            return refuse("42501", "COPY is not allowed: agent-console serves read-only SQL and has no file access")
        }
        "attach" | "detach" | "install" | "load" | "pragma" | "use" | "force" => {
            return refuse(
                "42501",
                format!("{} is not allowed: agent-console serves read-only SQL", first.to_uppercase()),
            )
        }
        w if WRITES.contains(&w) => {
            return refuse("25006", format!("cannot execute {} in a read-only transaction", w.to_uppercase()))
        }
        _ => {}
    }
    if let Some(p) = plan_select(stmt, &norm, session) {
        return p;
    }
    let views = stand_ins(stmt);
    let names: Vec<&str> = views.iter().map(|(n, _)| *n).collect();
    let sql = sql::rewrite(stmt, &|name| session.get(name), &names);
    // The same current-time rewrite as the HTTP surface (`now() - interval` without ICU).
    let sql = crate::store::sqlcompat::rewrite(&sql).into_owned();
    Plan::Query { sql, views: names }
}

fn plan_set(stmt: &str, words: &[&str], session: &Session) -> Plan {
    let mut i = 1;
    if matches!(words.get(i), Some(&"session") | Some(&"local")) {
        i += 1;
    }
    match words.get(i).copied() {
        // SET TRANSACTION ..., SET SESSION CHARACTERISTICS AS TRANSACTION ...
        Some("transaction") | Some("characteristics") => return command("SET"),
        Some("time") if words.get(i + 1) == Some(&"zone") => {
            let v = words.get(i + 2).map(|v| strip_value(v)).unwrap_or_default();
            let v = (!v.eq_ignore_ascii_case("default") && !v.eq_ignore_ascii_case("local")).then_some(v);
            return match session.set("timezone", v) {
                Ok(()) => command("SET"),
                Err(m) => refuse("54000", m),
            };
        }
        Some("names") => {
            return command("SET");
        }
        Some("authorization") | Some("role") => return command("SET"),
        _ => {}
    }
    // SET name {TO|=} value[, value...]
    let toks: Vec<sql::Token> =
        sql::lex(stmt).into_iter().filter(|t| !matches!(t.kind, Tok::Space | Tok::Comment)).collect();
    let Some(eq) = toks.iter().position(|t| t.text == "=" || t.text.eq_ignore_ascii_case("to")) else {
        return refuse("42601", "syntax error in SET: expected SET name TO value");
    };
    let name: String = toks[1..eq]
        .iter()
        .filter(|t| !t.text.eq_ignore_ascii_case("session") && !t.text.eq_ignore_ascii_case("local"))
        .map(|t| t.text.trim_matches('"'))
        .collect::<String>()
        .to_ascii_lowercase();
    let value: Vec<String> =
        toks[eq + 1..].iter().filter(|t| t.kind != Tok::Comma).map(|t| strip_value(t.text)).collect();
    let value = value.join(", ");
    let known = DEFAULTS.iter().any(|(k, _, _)| *k == name) || SETTABLE.contains(&name.as_str());
    if !known && !name.contains('.') {
        return refuse(
            "42501",
            format!("cannot change setting \"{name}\": agent-console's database settings are read-only (Postgres session settings are accepted and ignored)"),
        );
    }
    if matches!(
        name.as_str(),
        "server_version"
            | "server_version_num"
            | "server_encoding"
            | "integer_datetimes"
            | "max_identifier_length"
            | "block_size"
            | "is_superuser"
            | "lc_collate"
            | "lc_ctype"
            | "in_hot_standby"
            | "ssl"
            | "max_connections"
    ) {
        return refuse("55P02", format!("parameter \"{name}\" cannot be changed"));
    }
    match session.set(&name, (!value.eq_ignore_ascii_case("default")).then_some(value)) {
        Ok(()) => command("SET"),
        Err(m) => refuse("54000", m),
    }
}

fn strip_value(v: &str) -> String {
    sql::unquote_str(v).unwrap_or_else(|| v.trim_matches('"').to_string())
}

fn plan_show(words: &[&str], session: &Session) -> Plan {
    let rest = words[1..].join(" ").replace('"', "");
    let key = match rest.as_str() {
        "transaction isolation level" => "transaction_isolation".to_string(),
        "time zone" => "timezone".to_string(),
        "session authorization" => "session_authorization".to_string(),
        other => other.to_string(),
    };
    if key == "all" {
        let names: Vec<String> = DEFAULTS.iter().map(|(_, d, _)| d.to_string()).collect();
        let values: Vec<String> = DEFAULTS.iter().map(|(k, _, _)| session.get(k).unwrap_or_default()).collect();
        let descs: Vec<String> = DEFAULTS.iter().map(|_| String::new()).collect();
        return Plan::Rows(text_batch(&["name", "setting", "description"], vec![names, values, descs]));
    }
    match session.get(&key) {
        Some(v) => {
            let display = DEFAULTS.iter().find(|(k, _, _)| *k == key).map(|(_, d, _)| d.to_string()).unwrap_or(key);
            Plan::Rows(text_batch(&[display.as_str()], vec![vec![v]]))
        }
        None => refuse("42704", format!("unrecognized configuration parameter \"{key}\"")),
    }
}

/// Canned answers for SELECTs clients send on their own.
fn plan_select(stmt: &str, norm: &str, session: &Session) -> Option<Plan> {
    if norm == "select version ( )" || norm == "select pg_catalog.version ( )" {
        return Some(Plan::Rows(text_batch(&["version"], vec![vec![version_string()]])));
    }
    // Grafana's version probe wants an int column named `version`.
    if norm.starts_with("select current_setting ( 'server_version_num' ) :: int / 100 as version") {
        let schema = Arc::new(Schema::new(vec![Field::new("version", DataType::Int32, true)]));
        let col: ArrayRef = Arc::new(Int32Array::from(vec![1600]));
        return RecordBatch::try_new(schema, vec![col]).ok().map(Plan::Rows);
    }
    if let Some(rest) = norm.strip_prefix("select current_setting ( ") {
        let lit = rest.split(' ').next().unwrap_or_default();
        if let Some(name) = sql::unquote_str(lit) {
            let tail = &rest[lit.len()..];
            let missing_ok = tail == " , true )";
            if tail == " )" || missing_ok || tail == " , false )" {
                return Some(match session.get(&name) {
                    Some(v) => Plan::Rows(text_batch(&["current_setting"], vec![vec![v]])),
                    None if missing_ok => Plan::Rows(text_batch(&["current_setting"], vec![vec![String::new()]])),
                    None => refuse("42704", format!("unrecognized configuration parameter \"{name}\"")),
                });
            }
        }
    }
    if norm.contains("from information_schema.tables")
        && norm.contains("quote_ident ( table_schema )")
        && norm.contains("as \"table\"")
    {
        return Some(Plan::GrafanaTables);
    }
    if norm.contains("from information_schema.columns") && norm.contains("parse_ident (") {
        let toks = sql::lex(stmt);
        let pos = toks.iter().position(|t| t.kind == Tok::Word && t.text.eq_ignore_ascii_case("parse_ident"))?;
        let lit = toks[pos..].iter().find(|t| t.kind == Tok::Str)?;
        let name = sql::unquote_str(lit.text)?;
        let parts = split_ident(&name);
        return Some(match parts.as_slice() {
            [schema, table] => Plan::GrafanaColumns { schema: Some(schema.clone()), table: table.clone() },
            _ => Plan::GrafanaColumns { schema: None, table: parts.last().cloned().unwrap_or(name) },
        });
    }
    None
}

/// `parse_ident`: `a.b`, `"A"."b"` -> parts, quotes removed, unquoted parts lower-cased.
fn split_ident(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            '.' if !quoted => {
                parts.push(if was_quoted { cur.clone() } else { cur.to_lowercase() });
                cur.clear();
                was_quoted = false;
            }
            c => cur.push(c),
        }
    }
    parts.push(if was_quoted { cur } else { cur.to_lowercase() });
    parts
}

/// A one-batch result of text columns.
pub fn text_batch(names: &[&str], columns: Vec<Vec<String>>) -> RecordBatch {
    let fields: Vec<Field> = names.iter().map(|n| Field::new(*n, DataType::Utf8, true)).collect();
    let arrays: Vec<ArrayRef> = columns.into_iter().map(|c| Arc::new(StringArray::from(c)) as ArrayRef).collect();
    let schema = Arc::new(Schema::new(fields));
    RecordBatch::try_new(schema.clone(), arrays).unwrap_or_else(|_| RecordBatch::new_empty(schema))
}

/// Postgres catalogue relations DuckDB lacks, as empty stand-ins with Postgres' columns.
const STAND_INS: &[(&str, &str)] = &[
    ("pg_class", "SELECT *, false AS relforcerowsecurity FROM pg_catalog.pg_class"),
    (
        "pg_extension",
        "SELECT NULL::BIGINT AS oid, NULL::VARCHAR AS extname, NULL::BIGINT AS extowner, NULL::BIGINT AS extnamespace, NULL::BOOLEAN AS extrelocatable, NULL::VARCHAR AS extversion, NULL::VARCHAR AS extconfig, NULL::VARCHAR AS extcondition WHERE false",
    ),
    (
        "pg_inherits",
        "SELECT NULL::BIGINT AS inhrelid, NULL::BIGINT AS inhparent, NULL::INTEGER AS inhseqno, NULL::BOOLEAN AS inhdetachpending WHERE false",
    ),
    (
        "pg_range",
        "SELECT NULL::BIGINT AS rngtypid, NULL::BIGINT AS rngsubtype, NULL::BIGINT AS rngmultitypid, NULL::BIGINT AS rngcollation, NULL::BIGINT AS rngsubopc, NULL::VARCHAR AS rngcanonical, NULL::VARCHAR AS rngsubdiff WHERE false",
    ),
    (
        "pg_policy",
        "SELECT NULL::BIGINT AS oid, NULL::VARCHAR AS polname, NULL::BIGINT AS polrelid, NULL::VARCHAR AS polcmd, NULL::BOOLEAN AS polpermissive, NULL::BIGINT[] AS polroles, NULL::VARCHAR AS polqual, NULL::VARCHAR AS polwithcheck WHERE false",
    ),
    (
        "pg_trigger",
        "SELECT NULL::BIGINT AS oid, NULL::BIGINT AS tgrelid, NULL::BIGINT AS tgparentid, NULL::VARCHAR AS tgname, NULL::BIGINT AS tgfoid, NULL::SMALLINT AS tgtype, NULL::VARCHAR AS tgenabled, NULL::BOOLEAN AS tgisinternal, NULL::BIGINT AS tgconstrrelid, NULL::BIGINT AS tgconstrindid, NULL::BIGINT AS tgconstraint, NULL::BOOLEAN AS tgdeferrable, NULL::BOOLEAN AS tginitdeferred, NULL::SMALLINT AS tgnargs WHERE false",
    ),
    (
        "pg_rewrite",
        "SELECT NULL::BIGINT AS oid, NULL::VARCHAR AS rulename, NULL::BIGINT AS ev_class, NULL::VARCHAR AS ev_type, NULL::VARCHAR AS ev_enabled, NULL::BOOLEAN AS is_instead WHERE false",
    ),
    (
        "pg_statistic_ext",
        "SELECT NULL::BIGINT AS oid, NULL::BIGINT AS stxrelid, NULL::VARCHAR AS stxname, NULL::BIGINT AS stxnamespace, NULL::BIGINT AS stxowner, NULL::INTEGER AS stxstattarget, NULL::SMALLINT[] AS stxkeys, NULL::VARCHAR[] AS stxkind, NULL::VARCHAR AS stxexprs WHERE false",
    ),
    (
        "pg_publication",
        "SELECT NULL::BIGINT AS oid, NULL::VARCHAR AS pubname, NULL::BIGINT AS pubowner, NULL::BOOLEAN AS puballtables, NULL::BOOLEAN AS pubinsert, NULL::BOOLEAN AS pubupdate, NULL::BOOLEAN AS pubdelete, NULL::BOOLEAN AS pubtruncate, NULL::BOOLEAN AS pubviaroot WHERE false",
    ),
    (
        "pg_publication_rel",
        "SELECT NULL::BIGINT AS oid, NULL::BIGINT AS prpubid, NULL::BIGINT AS prrelid, NULL::VARCHAR AS prqual, NULL::SMALLINT[] AS prattrs WHERE false",
    ),
    (
        "pg_publication_namespace",
        "SELECT NULL::BIGINT AS oid, NULL::BIGINT AS pnpubid, NULL::BIGINT AS pnnspid WHERE false",
    ),
    (
        "pg_partitioned_table",
        "SELECT NULL::BIGINT AS partrelid, NULL::VARCHAR AS partstrat, NULL::SMALLINT AS partnatts, NULL::BIGINT AS partdefid WHERE false",
    ),
    (
        "pg_foreign_table",
        "SELECT NULL::BIGINT AS ftrelid, NULL::BIGINT AS ftserver, NULL::VARCHAR[] AS ftoptions WHERE false",
    ),
    (
        "pg_roles",
        "SELECT 10::BIGINT AS oid, 'agent_console' AS rolname, false AS rolsuper, true AS rolinherit, false AS rolcreaterole, false AS rolcreatedb, true AS rolcanlogin, false AS rolreplication, -1 AS rolconnlimit, NULL::TIMESTAMPTZ AS rolvaliduntil, false AS rolbypassrls, NULL::VARCHAR[] AS rolconfig",
    ),
    (
        "pg_user",
        "SELECT 'agent_console' AS usename, 10::BIGINT AS usesysid, false AS usecreatedb, false AS usesuper, false AS userepl, false AS usebypassrls, NULL::VARCHAR AS passwd, NULL::TIMESTAMPTZ AS valuntil, NULL::VARCHAR[] AS useconfig",
    ),
    (
        "pg_auth_members",
        "SELECT NULL::BIGINT AS oid, NULL::BIGINT AS roleid, NULL::BIGINT AS member, NULL::BIGINT AS grantor, NULL::BOOLEAN AS admin_option WHERE false",
    ),
    (
        "pg_stat_activity",
        "SELECT NULL::BIGINT AS datid, NULL::VARCHAR AS datname, NULL::INTEGER AS pid, NULL::VARCHAR AS usename, NULL::VARCHAR AS application_name, NULL::VARCHAR AS state, NULL::VARCHAR AS query WHERE false",
    ),
];

/// The stand-ins a statement mentions (by bare or `pg_catalog.`-qualified name).
fn stand_ins(stmt: &str) -> Vec<(&'static str, &'static str)> {
    let toks = sql::lex(stmt);
    STAND_INS
        .iter()
        .filter(|(name, _)| toks.iter().any(|t| t.kind == Tok::Word && t.text.eq_ignore_ascii_case(name)))
        .copied()
        .collect()
}

/// SQL creating a stand-in view (per connection, temporary).
pub fn stand_in_sql(name: &str) -> Option<String> {
    STAND_INS.iter().find(|(n, _)| *n == name).map(|(n, body)| format!("CREATE TEMP VIEW {n} AS {body}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use duckdb::arrow::array::Array;

    fn tag(p: &Plan) -> String {
        match p {
            Plan::Command { tag, .. } => tag.clone(),
            other => panic!("not a command: {other:?}"),
        }
    }

    #[test]
    fn session_commands_are_answered_without_duckdb() {
        let s = Session::default();
        assert_eq!(tag(&plan("SET TIMEZONE TO 'UTC'", &s)), "SET");
        assert_eq!(tag(&plan("set session statement_timeout = 5000", &s)), "SET");
        assert_eq!(tag(&plan("SET application_name = 'grafana'", &s)), "SET");
        assert_eq!(s.get("application_name").as_deref(), Some("grafana"));
        assert_eq!(tag(&plan("SET TIME ZONE 'Europe/Paris'", &s)), "SET");
        assert_eq!(s.get("TimeZone").as_deref(), Some("Europe/Paris"));
        assert_eq!(tag(&plan("RESET ALL", &s)), "RESET");
        assert_eq!(s.get("TimeZone").as_deref(), Some("UTC"));
        assert_eq!(tag(&plan("SET search_path TO main, public", &s)), "SET");
        assert_eq!(tag(&plan("SET my.custom = 1", &s)), "SET");
        assert_eq!(tag(&plan("BEGIN READ ONLY", &s)), "BEGIN");
        assert_eq!(tag(&plan("commit", &s)), "COMMIT");
        assert_eq!(tag(&plan("DISCARD ALL", &s)), "DISCARD ALL");
        assert!(matches!(plan("DEALLOCATE PREPARE s1", &s), Plan::Command { forget: Forget::One(n), .. } if n == "s1"));
        assert!(matches!(plan("-- ping", &s), Plan::Empty));
    }

    #[test]
    fn settings_per_connection_are_bounded() {
        let s = Session::default();
        for k in 0..MAX_SETTINGS {
            assert_eq!(tag(&plan(&format!("SET my.s{k} = 'v'"), &s)), "SET", "{k}");
        }
        // Changing an existing one still works; a new one is refused with 54000.
        assert_eq!(tag(&plan("SET my.s0 = 'w'", &s)), "SET");
        assert_eq!(s.get("my.s0").as_deref(), Some("w"));
        match plan("SET my.one_too_many = 'v'", &s) {
            Plan::Refuse { code, message } => {
                assert_eq!(code, "54000");
                assert!(message.contains("at most"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let long = format!("SET application_name = '{}'", "x".repeat(MAX_SETTING_BYTES));
        assert!(matches!(plan(&long, &s), Plan::Refuse { code: "54000", .. }));
        assert_eq!(tag(&plan("RESET ALL", &s)), "RESET");
        assert_eq!(tag(&plan("SET my.one_too_many = 'v'", &s)), "SET");
    }

    #[test]
    fn writes_and_settings_are_refused() {
        let s = Session::default();
        for (q, code) in [
            ("INSERT INTO spans VALUES (1)", "25006"),
            ("drop table spans", "25006"),
            ("COPY spans TO STDOUT", "42501"),
            ("SET memory_limit = '1TB'", "42501"),
            ("SET enable_external_access = true", "42501"),
            ("ATTACH 'x.db'", "42501"),
            ("SET server_version = '1'", "55P02"),
            ("SHOW nope", "42704"),
        ] {
            match plan(q, &s) {
                Plan::Refuse { code: c, .. } => assert_eq!(c, code, "{q}"),
                other => panic!("{q}: {other:?}"),
            }
        }
    }

    #[test]
    fn show_and_settings() {
        let s = Session::default();
        let Plan::Rows(b) = plan("SHOW TimeZone", &s) else { panic!("rows") };
        assert_eq!(b.schema().field(0).name(), "TimeZone");
        let Plan::Rows(b) = plan("show transaction isolation level", &s) else { panic!("rows") };
        assert_eq!(b.num_rows(), 1);
        let Plan::Rows(b) = plan("SELECT current_setting('server_version_num')::int/100 as version", &s) else {
            panic!("rows")
        };
        assert_eq!(b.column(0).data_type(), &DataType::Int32);
        let Plan::Rows(b) = plan("select version()", &s) else { panic!("rows") };
        assert!(b.column(0).len() == 1);
        match plan("SELECT current_setting('search_path') AS p, 1", &s) {
            Plan::Query { sql, .. } => assert_eq!(sql, "SELECT 'main' AS p, 1"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn grafana_catalogue_queries() {
        let s = Session::default();
        let tables = "SELECT\n    CASE WHEN \n          quote_ident(table_schema) IN (\n          SELECT\n            CASE WHEN trim(s[i]) = '\"$user\"' THEN user ELSE trim(s[i]) END\n          FROM\n            generate_series(\n              array_lower(string_to_array(current_setting('search_path'),','),1),\n              array_upper(string_to_array(current_setting('search_path'),','),1)\n            ) as i,\n            string_to_array(current_setting('search_path'),',') s\n          )\n      THEN quote_ident(table_name)\n      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)\n    END AS \"table\"\n    FROM information_schema.tables";
        assert!(matches!(plan(tables, &s), Plan::GrafanaTables));
        let cols = "SELECT quote_ident(column_name) AS \"column\", data_type AS \"type\"\n    FROM information_schema.columns\n    WHERE\n      CASE WHEN array_length(parse_ident('model_calls'),1) = 2\n        THEN quote_ident(table_schema) = (parse_ident('model_calls'))[1]";
        match plan(cols, &s) {
            Plan::GrafanaColumns { schema: None, table } => assert_eq!(table, "model_calls"),
            other => panic!("{other:?}"),
        }
        match plan("select 1 from information_schema.columns where x = parse_ident('main.\"Spans\"')", &s) {
            Plan::GrafanaColumns { schema, table } => {
                assert_eq!(schema.as_deref(), Some("main"));
                assert_eq!(table, "Spans");
            }
            other => panic!("{other:?}"),
        }
        match plan("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'", &s) {
            Plan::Query { views, .. } => assert_eq!(views, vec!["pg_extension"]),
            other => panic!("{other:?}"),
        }
    }
}
