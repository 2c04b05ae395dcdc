//! Fuzz target: the SQL sandbox's vetting (`store::reader::vet`: DuckDB's `json_serialize_sql`,
//! then `store::sandbox::check` walking the serialized statement without recursion), as
//! `/api/sql` and the Postgres port run it, after the DuckDB-compatibility rewrite
//! (`store::sqlcompat::rewrite`). First byte even: the rest is SQL for the whole path on an
//! in-memory DuckDB; odd: the rest is handed to `sandbox::check` as serialized JSON directly (the
//! scanner must refuse malformed JSON of any depth, never panic or recurse). A refused statement
//! stays refused with the allow-list's message; nothing here executes the statement.
#![cfg_attr(feature = "libfuzzer", no_main)]

use agent_console::store::reader::vet;
use agent_console::store::sandbox;
use agent_console::store::sqlcompat;

thread_local! {
    static DB: duckdb::Connection = duckdb::Connection::open_in_memory().expect("in-memory DuckDB");
}

/// Longest SQL the API accepts is much larger; DuckDB's own parser is not ours to fuzz, and long
/// inputs only slow the run down.
const MAX_SQL: usize = 4096;

fn check(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(body) else { return };
    if sel % 2 == 1 {
        let _ = sandbox::check(text);
        return;
    }
    if text.len() > MAX_SQL || text.contains('\0') {
        return;
    }
    let sql = sqlcompat::rewrite(text);
    DB.with(|conn| {
        let _ = vet(conn, &sql);
    });
}

agent_console_fuzz::fuzz_target!(check);
