//! The read-only SQL sandbox: what a reader's statement may do. DuckDB's own parser turns the
//! statement into JSON (`json_serialize_sql`, which accepts only SELECT-like statements; the
//! caller runs it), `scan` reads that JSON in one pass without recursion, and `check` allows
//! exactly one statement whose every function, operator, macro and table function is on the
//! allow-list (`functions::ALLOWED`), that reads no relation revealing server paths or settings,
//! no `SHOW <setting>` and no path-like replacement scan (`FROM 'file.csv'`). Deny by default: a
//! function DuckDB adds in an upgrade is refused until it is classified.
//!
//! Free of DuckDB and of the rest of the crate, so the fuzz targets (`tests/fuzz`) build it alone.

pub mod functions;
pub mod scan;

/// Why a statement may not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    /// Valid SQL that a reader may not run (the message says why).
    #[error("{0}")]
    Refused(String),
    /// DuckDB could not parse the statement (its message).
    #[error("{0}")]
    Invalid(String),
}

/// The message for statements that are not a read-only query.
pub const READ_ONLY: &str =
    "only read-only SELECT queries are allowed (no INSERT/UPDATE/DELETE/CREATE/ATTACH/COPY/SET/INSTALL/PRAGMA)";

/// Decide on one statement list as `json_serialize_sql` serialized it.
pub fn check(serialized: &str) -> Result<(), SandboxError> {
    let s = scan::scan(serialized).map_err(|e| SandboxError::Invalid(format!("cannot vet query: {e}")))?;
    if s.error {
        let msg = s.error_message.unwrap_or_else(|| "not a query".into());
        if msg.contains("Only SELECT") || s.error_type.as_deref() == Some("not implemented") {
            return Err(SandboxError::Refused(READ_ONLY.into()));
        }
        return Err(SandboxError::Invalid(msg));
    }
    if s.statements != 1 {
        return Err(SandboxError::Refused(format!("send exactly one statement, got {}", s.statements)));
    }
    for f in &s.functions {
        if let Some(why) = functions::refusal(f) {
            return Err(SandboxError::Refused(format!(
                "function {}() is not allowed: it {why} (the SQL API is read-only and cannot reach files)",
                printable(f)
            )));
        }
    }
    for t in &s.tables {
        let name = t.trim_matches('"').to_ascii_lowercase();
        if let Some(why) = functions::relation_refusal(&name) {
            return Err(SandboxError::Refused(format!("{} is not allowed: it {why}", printable(&name))));
        }
        // `FROM 'file.csv'` is a replacement scan on a table name that looks like a path.
        if t.contains(['/', '\\', '.', ':']) {
            return Err(SandboxError::Refused(format!(
                "function scan of {:?}() is not allowed: the SQL API is read-only and cannot reach files",
                printable(t)
            )));
        }
    }
    for show in &s.shows {
        if show.show_type == "SHOW" && !show.table_name.is_empty() {
            return Err(SandboxError::Refused(format!(
                "SHOW {} is not allowed: settings are not readable (use DESCRIBE <table> for a table's columns)",
                printable(&show.table_name)
            )));
        }
    }
    Ok(())
}

/// A user-supplied name, shortened for an error message.
fn printable(s: &str) -> String {
    if s.chars().count() > 64 {
        format!("{}...", s.chars().take(64).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt(select_list: &str, from: &str) -> String {
        format!(
            r#"{{"error":false,"statements":[{{"node":{{"type":"SELECT_NODE","select_list":[{select_list}],"from_table":{from}}}}}]}}"#
        )
    }

    #[test]
    fn allows_ordinary_queries() {
        let json = stmt(
            r#"{"class":"FUNCTION","function_name":"sum","children":[]},{"class":"FUNCTION","function_name":"->>"}"#,
            r#"{"type":"BASE_TABLE","table_name":"model_calls"}"#,
        );
        assert_eq!(check(&json), Ok(()));
    }

    #[test]
    fn refuses_escapes_paths_and_writes() {
        let refused = |json: &str| matches!(check(json), Err(SandboxError::Refused(_)));
        let f = |name: &str| stmt(&format!(r#"{{"function_name":"{name}"}}"#), "null");
        for name in ["json_execute_serialized_sql", "current_setting", "duckdb_settings", "read_csv", "query", "getenv"]
        {
            assert!(refused(&f(name)), "{name}");
        }
        assert!(refused(&stmt("", r#"{"type":"BASE_TABLE","table_name":"pg_settings"}"#)));
        assert!(refused(&stmt("", r#"{"type":"BASE_TABLE","table_name":"/etc/passwd"}"#)));
        assert!(refused(&stmt("", r#"{"type":"SHOW_REF","show_type":"SHOW","table_name":"temp_directory"}"#)));
        assert!(!refused(&stmt("", r#"{"type":"SHOW_REF","show_type":"SHOW_SPECIAL","table_name":"\"tables\""}"#)));
        assert!(refused(r#"{"error":true,"error_type":"not implemented","error_message":"Only SELECT statements"}"#));
        assert!(refused(r#"{"error":false,"statements":[{},{}]}"#));
        assert!(matches!(
            check(r#"{"error":true,"error_type":"parser","error_message":"syntax error at or near \"x\""}"#),
            Err(SandboxError::Invalid(m)) if m.contains("syntax error")
        ));
        assert!(matches!(check("{"), Err(SandboxError::Invalid(_))));
    }
}
