//! Fuzz target: the Postgres wire surface's SQL handling before DuckDB sees anything
//! (`pgwire::sql`: lexer, statement splitter, normalizer, literal quoting, the rewriters for
//! `extract(.. from ..)`, `date_trunc(`, `pg_get_expr(`, current-time functions and settings; and
//! `pgwire::chatter::plan`, which classifies and rewrites each statement). Properties: nothing
//! panics or recurses per nesting level (inputs nest thousands deep within the length limit);
//! quoting round-trips.
#![cfg_attr(feature = "libfuzzer", no_main)]

use agent_console::pgwire::chatter::{plan, Session};
use agent_console::pgwire::sql;

fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = sql::lex(text);
    let _ = sql::is_empty(text);
    let _ = sql::normalize(text);
    let _ = sql::rewrite(text, &|name: &str| (name.len() % 2 == 0).then(|| "on".to_string()), &["application_name"]);
    assert_eq!(sql::unquote_str(&sql::quote_str(text)).as_deref(), Some(text), "quote_str round-trips");
    let _ = sql::quote_ident(text);
    let session = Session::default();
    for stmt in sql::split(text) {
        let _ = plan(&stmt.text, &session);
    }
}

agent_console_fuzz::fuzz_target!(check);
