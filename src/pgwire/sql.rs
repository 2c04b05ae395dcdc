//! A small SQL lexer for the Postgres front end: splits a simple-query string into statements
//! (respecting quotes, dollar quotes and comments), normalises a statement for recognising
//! client chatter, and rewrites Postgres-only spellings (`OPERATOR(pg_catalog.~)`,
//! `COLLATE pg_catalog.default`, `::pg_catalog.text`, `::regclass`, ...) into SQL DuckDB parses.

/// Kinds of token; only what splitting and rewriting need to tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tok {
    Word,
    QuotedIdent,
    Str,
    Num,
    Param,
    Op,
    Dot,
    Space,
    Comment,
    Semi,
    LParen,
    RParen,
    Comma,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    pub kind: Tok,
    pub text: &'a str,
}

impl Token<'_> {
    fn is_trivia(&self) -> bool {
        matches!(self.kind, Tok::Space | Tok::Comment)
    }

    fn is_word(&self, w: &str) -> bool {
        self.kind == Tok::Word && self.text.eq_ignore_ascii_case(w)
    }
}

const OP_CHARS: &str = "+-*/<>=~!@#%^&|`?:";

/// Tokenise `sql`. Never fails: unterminated quotes and comments run to the end.
pub fn lex(sql: &str) -> Vec<Token<'_>> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let c = b[i];
        let kind = if c.is_ascii_whitespace() {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            Tok::Space
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            Tok::Comment
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i = block_comment_end(b, i);
            Tok::Comment
        } else if c == b'\'' {
            i = quoted_end(b, i, b'\'', false);
            Tok::Str
        } else if c == b'"' {
            i = quoted_end(b, i, b'"', false);
            Tok::QuotedIdent
        } else if c == b'$' {
            if b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                Tok::Param
            } else if let Some(end) = dollar_quote_end(sql, i) {
                i = end;
                Tok::Str
            } else {
                i += 1;
                Tok::Op
            }
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            i += 1;
            while i < b.len() {
                let d = b[i];
                let exponent_sign = (d == b'+' || d == b'-') && matches!(b[i - 1], b'e' | b'E');
                if d.is_ascii_alphanumeric() || d == b'.' || d == b'_' || exponent_sign {
                    i += 1;
                } else {
                    break;
                }
            }
            Tok::Num
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80) {
                i += 1;
            }
            // E'...' strings take backslash escapes; other prefixes (B, X, U&) are plain strings.
            if i - start == 1 && matches!(c, b'e' | b'E') && b.get(i) == Some(&b'\'') {
                i = quoted_end(b, i, b'\'', true);
                Tok::Str
            } else {
                Tok::Word
            }
        } else {
            i += 1;
            match c {
                b';' => Tok::Semi,
                b'(' => Tok::LParen,
                b')' => Tok::RParen,
                b',' => Tok::Comma,
                b'.' => Tok::Dot,
                b':' if b.get(i) == Some(&b':') => {
                    i += 1;
                    Tok::Op
                }
                b'[' | b']' => Tok::Op,
                _ => {
                    while i < b.len()
                        && OP_CHARS.as_bytes().contains(&b[i])
                        && !(b[i] == b'-' && b.get(i + 1) == Some(&b'-'))
                        && !(b[i] == b'/' && b.get(i + 1) == Some(&b'*'))
                    {
                        i += 1;
                    }
                    Tok::Op
                }
            }
        };
        // Never split inside a UTF-8 sequence.
        while i < b.len() && !sql.is_char_boundary(i) {
            i += 1;
        }
        out.push(Token { kind, text: &sql[start..i] });
    }
    out
}

fn block_comment_end(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

fn quoted_end(b: &[u8], mut i: usize, q: u8, backslash: bool) -> usize {
    i += 1;
    while i < b.len() {
        if backslash && b[i] == b'\\' {
            i += 2;
        } else if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

fn dollar_quote_end(sql: &str, i: usize) -> Option<usize> {
    let b = sql.as_bytes();
    let mut j = i + 1;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80) {
        j += 1;
    }
    if b.get(j) != Some(&b'$') {
        return None;
    }
    let tag = &sql[i..=j];
    let body = j + 1;
    Some(sql[body..].find(tag).map(|p| body + p + tag.len()).unwrap_or(b.len()))
}

/// One statement of a query string: its text (without the `;`) and whether it holds only
/// whitespace and comments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub text: String,
    pub empty: bool,
}

/// Split a simple-query string on top-level `;`. Empty pieces between statements are dropped;
/// a string with nothing but comments, blanks and `;` gives no statements (EmptyQueryResponse).
pub fn split(sql: &str) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut empty = true;
    for t in lex(sql) {
        if t.kind == Tok::Semi {
            if !empty {
                out.push(Statement { text: cur.trim().to_string(), empty });
            }
            cur.clear();
            empty = true;
        } else {
            empty &= t.is_trivia();
            cur.push_str(t.text);
        }
    }
    if !empty {
        out.push(Statement { text: cur.trim().to_string(), empty });
    }
    out
}

/// True when `sql` holds only whitespace, comments and semicolons.
pub fn is_empty(sql: &str) -> bool {
    lex(sql).iter().all(|t| t.is_trivia() || t.kind == Tok::Semi)
}

/// Words lower-cased, comments dropped, one space between tokens (none around `.`): the form
/// chatter is recognised in. String literals and quoted identifiers keep their case.
pub fn normalize(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut after_dot = false;
    for t in lex(sql).iter().filter(|t| !t.is_trivia() && t.kind != Tok::Semi) {
        if !out.is_empty() && !after_dot && t.kind != Tok::Dot {
            out.push(' ');
        }
        after_dot = t.kind == Tok::Dot;
        if t.kind == Tok::Word {
            out.push_str(&t.text.to_ascii_lowercase());
        } else {
            out.push_str(t.text);
        }
    }
    out
}

/// The value of a single-quoted literal token (`'it''s'` -> `it's`); `None` for other tokens.
pub fn unquote_str(text: &str) -> Option<String> {
    let inner = text.strip_prefix('\'')?.strip_suffix('\'')?;
    Some(inner.replace("''", "'"))
}

/// Quote `s` as a SQL string literal.
pub fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Postgres `quote_ident`: plain lower-case identifiers stay bare, anything else is quoted.
pub fn quote_ident(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain && !matches!(s, "user" | "table" | "select" | "from" | "where" | "order" | "group" | "time") {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

/// Postgres type names DuckDB lacks, and what to cast to instead.
fn duckdb_type_for(pg: &str) -> Option<&'static str> {
    Some(match pg.to_ascii_lowercase().as_str() {
        "regclass" | "regtype" | "regproc" | "regprocedure" | "regnamespace" | "regrole" | "regoper" | "name"
        | "regconfig" | "cstring" => "VARCHAR",
        "jsonb" => "JSON",
        "oid" | "xid" | "cid" | "tid" => "BIGINT",
        "int2vector" | "oidvector" => "VARCHAR",
        _ => return None,
    })
}

/// Postgres functions DuckDB lacks whose answer here is a constant.
const CONSTANT_CALLS: &[(&str, &str)] = &[
    ("pg_get_userbyid", "'agent_console'"),
    ("pg_encoding_to_char", "'UTF8'"),
    ("pg_backend_pid", "0"),
    ("pg_get_indexdef", "''"),
    ("pg_get_triggerdef", "''"),
    ("pg_get_partkeydef", "NULL::VARCHAR"),
    ("pg_get_statisticsobjdef_columns", "NULL::VARCHAR"),
    ("pg_relation_size", "0::BIGINT"),
    ("pg_total_relation_size", "0::BIGINT"),
    ("pg_table_size", "0::BIGINT"),
    ("pg_indexes_size", "0::BIGINT"),
    ("pg_is_in_recovery", "false"),
    ("pg_relation_is_publishable", "false"),
    ("array_lower", "1"),
    ("txid_current", "0::BIGINT"),
];

/// Postgres functions DuckDB has under another name (same arguments).
const RENAMED_CALLS: &[(&str, &str)] = &[("array_upper", "array_length"), ("btrim", "trim")];

/// Positions of the commas directly inside the parentheses at `open`..`close`.
fn top_level_commas(toks: &[Token<'_>], open: usize, close: usize) -> Vec<usize> {
    let mut depth = 0usize;
    let mut out = Vec::new();
    for (k, t) in toks.iter().enumerate().take(close).skip(open) {
        match t.kind {
            Tok::LParen => depth += 1,
            Tok::RParen => depth = depth.saturating_sub(1),
            Tok::Comma if depth == 1 => out.push(k),
            _ => {}
        }
    }
    out
}

/// Index of the `)` closing the `(` at `open`.
fn matching_paren(toks: &[Token<'_>], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (k, t) in toks.iter().enumerate().skip(open) {
        match t.kind {
            Tok::LParen => depth += 1,
            Tok::RParen => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}

/// Rewrite Postgres-only spellings into DuckDB SQL. `settings` answers `current_setting('x')`
/// and `version()` with literals; `missing` names catalogue relations to read unqualified
/// (stand-ins are created for them as temporary views).
pub fn rewrite(sql: &str, setting: &dyn Fn(&str) -> Option<String>, missing: &[&str]) -> String {
    rewrite_tokens(&lex(sql), setting, missing)
}

fn rewrite_tokens(toks: &[Token<'_>], setting: &dyn Fn(&str) -> Option<String>, missing: &[&str]) -> String {
    let n = toks.len();
    let sql_len: usize = toks.iter().map(|t| t.text.len()).sum();
    let mut out = String::with_capacity(sql_len);
    // Index of the next non-trivia token at or after `i`.
    let next = |mut i: usize| {
        while i < n && toks[i].is_trivia() {
            i += 1;
        }
        i
    };
    let mut i = 0;
    while i < n {
        let t = toks[i];
        // OPERATOR(pg_catalog.~) -> ~
        if t.is_word("operator") {
            let a = next(i + 1);
            if a < n && toks[a].kind == Tok::LParen {
                let mut j = next(a + 1);
                if j < n && toks[j].is_word("pg_catalog") {
                    let d = next(j + 1);
                    if d < n && toks[d].kind == Tok::Dot {
                        j = next(d + 1);
                    }
                }
                let close = next(j + 1);
                if j < n && toks[j].kind == Tok::Op && close < n && toks[close].kind == Tok::RParen {
                    out.push_str(toks[j].text);
                    i = close + 1;
                    continue;
                }
            }
        }
        // COLLATE pg_catalog.default / COLLATE "default" -> (nothing)
        if t.is_word("collate") {
            let mut j = next(i + 1);
            if j < n && toks[j].is_word("pg_catalog") {
                let d = next(j + 1);
                if d < n && toks[d].kind == Tok::Dot {
                    j = next(d + 1);
                }
            }
            if j < n && (toks[j].is_word("default") || toks[j].text == "\"default\"" || toks[j].text == "\"C\"") {
                i = j + 1;
                continue;
            }
        }
        // pg_catalog.x: drop the schema for function calls, casts and relations we stand in for.
        if t.is_word("pg_catalog") {
            let d = next(i + 1);
            if d < n && toks[d].kind == Tok::Dot {
                let w = next(d + 1);
                if w < n && toks[w].kind == Tok::Word {
                    let after = next(w + 1);
                    let is_call = after < n && toks[after].kind == Tok::LParen;
                    let prev_cast = out.trim_end().ends_with("::");
                    let lower = toks[w].text.to_ascii_lowercase();
                    if is_call || prev_cast || missing.contains(&lower.as_str()) {
                        i = w;
                        continue;
                    }
                }
            }
        }
        // ::regclass and friends
        if t.kind == Tok::Word && out.trim_end().ends_with("::") {
            if let Some(ty) = duckdb_type_for(t.text) {
                out.push_str(ty);
                i += 1;
                continue;
            }
        }
        // This DuckDB has no ICU, so TIMESTAMPTZ date parts go through epoch_us / a UTC cast:
        // extract(epoch from x) (Grafana's $__timeGroup and $__timeEpoch), extract(f from x),
        // date_trunc('u', x).
        if t.is_word("extract") {
            let a = next(i + 1);
            let f = next(a + 1);
            let from = next(f + 1);
            if from < n && toks[a].kind == Tok::LParen && toks[f].kind == Tok::Word && toks[from].is_word("from") {
                if let Some(end) = matching_paren(toks, a) {
                    let inner = rewrite_tokens(&toks[from + 1..end], setting, missing);
                    let inner = inner.trim();
                    if toks[f].is_word("epoch") {
                        out.push_str(&format!("(epoch_us({inner}) / 1000000.0)"));
                    } else {
                        out.push_str(&format!("extract({} from ({inner})::TIMESTAMP)", toks[f].text));
                    }
                    i = end + 1;
                    continue;
                }
            }
        }
        if t.is_word("date_trunc") {
            let a = next(i + 1);
            if a < n && toks[a].kind == Tok::LParen {
                if let Some(end) = matching_paren(toks, a) {
                    let commas = top_level_commas(toks, a, end);
                    if let [c] = commas.as_slice() {
                        let unit = rewrite_tokens(&toks[a + 1..*c], setting, missing);
                        let x = rewrite_tokens(&toks[c + 1..end], setting, missing);
                        out.push_str(&format!("date_trunc({}, ({})::TIMESTAMP)::TIMESTAMPTZ", unit.trim(), x.trim()));
                        i = end + 1;
                        continue;
                    }
                }
            }
        }
        // pg_get_expr(expr, rel, pretty): DuckDB's takes two arguments.
        if t.is_word("pg_get_expr") {
            let a = next(i + 1);
            if a < n && toks[a].kind == Tok::LParen {
                if let Some(end) = matching_paren(toks, a) {
                    let commas = top_level_commas(toks, a, end);
                    if commas.len() == 2 {
                        out.push_str("pg_get_expr");
                        out.push_str(&rewrite_tokens(&toks[a..commas[1]], setting, missing));
                        out.push(')');
                        i = end + 1;
                        continue;
                    }
                }
            }
        }
        // Postgres functions DuckDB knows by another name.
        if t.kind == Tok::Word {
            if let Some((_, to)) = RENAMED_CALLS.iter().find(|(f, _)| t.text.eq_ignore_ascii_case(f)) {
                let a = next(i + 1);
                if a < n && toks[a].kind == Tok::LParen {
                    out.push_str(to);
                    i += 1;
                    continue;
                }
            }
        }
        // Catalogue functions DuckDB lacks -> constant answers.
        if t.kind == Tok::Word {
            if let Some((_, value)) = CONSTANT_CALLS.iter().find(|(f, _)| t.text.eq_ignore_ascii_case(f)) {
                let a = next(i + 1);
                if a < n && toks[a].kind == Tok::LParen {
                    if let Some(end) = matching_paren(toks, a) {
                        out.push_str(value);
                        i = end + 1;
                        continue;
                    }
                }
            }
        }
        // current_setting('name' [, missing_ok]) and version() -> literals
        if t.kind == Tok::Word && (t.is_word("current_setting") || t.is_word("version")) {
            let a = next(i + 1);
            if a < n && toks[a].kind == Tok::LParen {
                if t.is_word("version") {
                    let close = next(a + 1);
                    if close < n && toks[close].kind == Tok::RParen {
                        if let Some(v) = setting("version()") {
                            out.push_str(&quote_str(&v));
                            i = close + 1;
                            continue;
                        }
                    }
                } else {
                    let s = next(a + 1);
                    if s < n && toks[s].kind == Tok::Str {
                        let mut close = next(s + 1);
                        if close < n && toks[close].kind == Tok::Comma {
                            close = next(next(close + 1) + 1);
                        }
                        if close < n && toks[close].kind == Tok::RParen {
                            if let Some(v) = unquote_str(toks[s].text).and_then(|name| setting(&name)) {
                                out.push_str(&quote_str(&v));
                                i = close + 1;
                                continue;
                            }
                        }
                    }
                }
            }
        }
        out.push_str(t.text);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_top_level_semicolons_only() {
        let s = split("SET TIMEZONE TO 'UTC'; select 42");
        assert_eq!(s.iter().map(|s| s.text.as_str()).collect::<Vec<_>>(), vec!["SET TIMEZONE TO 'UTC'", "select 42"]);
        let s = split("select ';' as a, \"x;y\" -- c;\n; select $$a;b$$, $t$;$t$ /* ; /* ; */ */");
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(s[1].text.contains("$t$;$t$"));
        assert_eq!(split("select E'it\\'s;' ; select 2").len(), 2);
        assert_eq!(split("select 1;;").len(), 1);
        // Grafana's trailing SQLCommenter tag is not a statement.
        assert_eq!(split("select 1; /*key='value',k2='v2'*/;").len(), 1);
        assert_eq!(split("select 1 /*key='v'*/").len(), 1);
    }

    #[test]
    fn empty_queries() {
        for q in ["", " ", ";", "-- ping", "/* x */", " ; -- a\n ;", "/* /* nested */ */"] {
            assert!(is_empty(q), "{q:?}");
            assert!(split(q).is_empty(), "{q:?}");
        }
        assert!(!is_empty("select 1 -- x"));
    }

    #[test]
    fn normalizes_for_matching() {
        assert_eq!(normalize("  SET  TimeZone\n TO 'UTC' -- c\n"), "set timezone to 'UTC'");
        assert_eq!(
            normalize("select current_setting('server_version_num')::int/100 as version"),
            "select current_setting ( 'server_version_num' ) :: int / 100 as version"
        );
    }

    #[test]
    fn rewrites_postgres_spellings() {
        let setting = |n: &str| match n {
            "server_version_num" => Some("160000".to_string()),
            "version()" => Some("PostgreSQL 16.0".to_string()),
            _ => None,
        };
        let r = rewrite(
            "SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(x)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid)",
            &setting,
            &[],
        );
        assert_eq!(
            r,
            "SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relname ~ '^(x)$'  AND pg_table_is_visible(c.oid)"
        );
        assert_eq!(rewrite("select x::pg_catalog.text, y::regclass", &setting, &[]), "select x::text, y::VARCHAR");
        assert_eq!(
            rewrite(
                "SELECT current_setting('server_version_num')::int, version(), current_setting('nope')",
                &setting,
                &[]
            ),
            "SELECT '160000'::int, 'PostgreSQL 16.0', current_setting('nope')"
        );
        assert_eq!(
            rewrite("select * from pg_catalog.pg_extension e, pg_catalog.pg_class", &setting, &["pg_extension"]),
            "select * from pg_extension e, pg_catalog.pg_class"
        );
        assert_eq!(
            rewrite(
                "SELECT floor(extract(epoch from time)/300)*300 AS \"time\", extract(hour from t.x)",
                &setting,
                &[]
            ),
            "SELECT floor((epoch_us(time) / 1000000.0)/300)*300 AS \"time\", extract(hour from (t.x)::TIMESTAMP)"
        );
        assert_eq!(
            rewrite("select date_trunc('minute', time) from spans", &setting, &[]),
            "select date_trunc('minute', (time)::TIMESTAMP)::TIMESTAMPTZ from spans"
        );
        // Nothing inside literals is touched.
        assert_eq!(rewrite("select 'version()'", &setting, &[]), "select 'version()'");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("spans"), "spans");
        assert_eq!(quote_ident("Spans"), "\"Spans\"");
        assert_eq!(quote_ident("a b"), "\"a b\"");
        assert_eq!(unquote_str("'it''s'"), Some("it's".into()));
        assert_eq!(quote_str("it's"), "'it''s'");
    }
}
