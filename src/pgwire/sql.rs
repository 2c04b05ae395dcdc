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

/// Parenthesis structure of a token list, computed in one pass with an explicit stack: for each
/// `(` its matching `)` and the commas directly inside it. Lets every rewrite find a call's extent
/// in O(1), so rewriting is linear in the input whatever its nesting.
struct Parens {
    close: Vec<Option<usize>>,
    /// Per `(`: the number of commas directly inside it and the first two of them.
    commas: Vec<(usize, usize, usize)>,
}

impl Parens {
    fn of(toks: &[Token<'_>]) -> Parens {
        let mut close = vec![None; toks.len()];
        let mut commas = vec![(0usize, 0usize, 0usize); toks.len()];
        let mut open: Vec<usize> = Vec::new();
        for (k, t) in toks.iter().enumerate() {
            match t.kind {
                Tok::LParen => open.push(k),
                Tok::RParen => {
                    if let Some(o) = open.pop() {
                        close[o] = Some(k);
                    }
                }
                Tok::Comma => {
                    if let Some(&o) = open.last() {
                        let c = &mut commas[o];
                        match c.0 {
                            0 => c.1 = k,
                            1 => c.2 = k,
                            _ => {}
                        }
                        c.0 += 1;
                    }
                }
                _ => {}
            }
        }
        Parens { close, commas }
    }
}

/// A pending end of a rewritten call: when the rewrite reaches token `at`, trailing whitespace is
/// trimmed (if `trim`), `emit` is written, rewriting resumes at `resume` (skipping leading
/// whitespace if `skip_space`: the start of the next argument), and `then` becomes the next
/// pending end.
struct Pending {
    at: usize,
    emit: &'static str,
    resume: usize,
    trim: bool,
    skip_space: bool,
    then: Option<Box<Pending>>,
}

/// Rewrite Postgres-only spellings into DuckDB SQL. `settings` answers `current_setting('x')`
/// and `version()` with literals; `missing` names catalogue relations to read unqualified
/// (stand-ins are created for them as temporary views). Iterative: nested calls that need a
/// prefix and a suffix (`extract(.. from x)`, `date_trunc(u, x)`, `pg_get_expr(e, r, p)`) push
/// their suffix on an explicit stack, so input nesting costs heap, never call stack.
pub fn rewrite(sql: &str, setting: &dyn Fn(&str) -> Option<String>, missing: &[&str]) -> String {
    let toks = lex(sql);
    let parens = Parens::of(&toks);
    let n = toks.len();
    let mut out = String::with_capacity(sql.len() + 32);
    let mut pending: Vec<Pending> = Vec::new();
    let mut i = 0;
    loop {
        // The end of the innermost rewritten call: everything inside it is written.
        if let Some(p) = pending.last() {
            if i >= p.at {
                let Some(p) = pending.pop() else { break };
                if p.trim {
                    out.truncate(out.trim_end().len());
                }
                out.push_str(p.emit);
                i = p.resume;
                if let Some(then) = p.then {
                    pending.push(*then);
                }
                if p.skip_space {
                    let bound = pending.last().map_or(n, |p| p.at);
                    while i < bound && toks[i].kind == Tok::Space {
                        i += 1;
                    }
                }
                continue;
            }
        }
        // Rules look no further than the end of the call being rewritten.
        let bound = pending.last().map_or(n, |p| p.at);
        if i >= bound {
            break;
        }
        // Index of the next non-trivia token at or after `j` (`bound` when there is none).
        let next = |mut j: usize| {
            while j < bound && toks[j].is_trivia() {
                j += 1;
            }
            j
        };
        let t = toks[i];
        // OPERATOR(pg_catalog.~) -> ~
        if t.is_word("operator") {
            let a = next(i + 1);
            if a < bound && toks[a].kind == Tok::LParen {
                let mut j = next(a + 1);
                if j < bound && toks[j].is_word("pg_catalog") {
                    let d = next(j + 1);
                    if d < bound && toks[d].kind == Tok::Dot {
                        j = next(d + 1);
                    }
                }
                let close = next(j + 1);
                if j < bound && toks[j].kind == Tok::Op && close < bound && toks[close].kind == Tok::RParen {
                    out.push_str(toks[j].text);
                    i = close + 1;
                    continue;
                }
            }
        }
        // COLLATE pg_catalog.default / COLLATE "default" -> (nothing)
        if t.is_word("collate") {
            let mut j = next(i + 1);
            if j < bound && toks[j].is_word("pg_catalog") {
                let d = next(j + 1);
                if d < bound && toks[d].kind == Tok::Dot {
                    j = next(d + 1);
                }
            }
            if j < bound && (toks[j].is_word("default") || toks[j].text == "\"default\"" || toks[j].text == "\"C\"") {
                i = j + 1;
                continue;
            }
        }
        // pg_catalog.x: drop the schema for function calls, casts and relations we stand in for.
        if t.is_word("pg_catalog") {
            let d = next(i + 1);
            if d < bound && toks[d].kind == Tok::Dot {
                let w = next(d + 1);
                if w < bound && toks[w].kind == Tok::Word {
                    let after = next(w + 1);
                    let is_call = after < bound && toks[after].kind == Tok::LParen;
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
            if from < bound && toks[a].kind == Tok::LParen && toks[f].kind == Tok::Word && toks[from].is_word("from") {
                if let Some(end) = parens.close[a] {
                    let emit = if toks[f].is_word("epoch") {
                        out.push_str("(epoch_us(");
                        ") / 1000000.0)"
                    } else {
                        out.push_str("extract(");
                        out.push_str(toks[f].text);
                        out.push_str(" from (");
                        ")::TIMESTAMP)"
                    };
                    pending.push(Pending { at: end, emit, resume: end + 1, trim: true, skip_space: false, then: None });
                    i = from + 1;
                    while i < end && toks[i].kind == Tok::Space {
                        i += 1;
                    }
                    continue;
                }
            }
        }
        if t.is_word("date_trunc") {
            let a = next(i + 1);
            if a < bound && toks[a].kind == Tok::LParen {
                if let (Some(end), (1, c, _)) = (parens.close[a], parens.commas[a]) {
                    out.push_str("date_trunc(");
                    let x_end = Pending {
                        at: end,
                        emit: ")::TIMESTAMP)::TIMESTAMPTZ",
                        resume: end + 1,
                        trim: true,
                        skip_space: false,
                        then: None,
                    };
                    pending.push(Pending {
                        at: c,
                        emit: ", (",
                        resume: c + 1,
                        trim: true,
                        skip_space: true,
                        then: Some(Box::new(x_end)),
                    });
                    i = a + 1;
                    while i < c && toks[i].kind == Tok::Space {
                        i += 1;
                    }
                    continue;
                }
            }
        }
        // pg_get_expr(expr, rel, pretty): DuckDB's takes two arguments.
        if t.is_word("pg_get_expr") {
            let a = next(i + 1);
            if a < bound && toks[a].kind == Tok::LParen {
                if let (Some(end), (2, _, second)) = (parens.close[a], parens.commas[a]) {
                    out.push_str("pg_get_expr");
                    pending.push(Pending {
                        at: second,
                        emit: ")",
                        resume: end + 1,
                        trim: false,
                        skip_space: false,
                        then: None,
                    });
                    i = a;
                    continue;
                }
            }
        }
        // Postgres functions DuckDB knows by another name.
        if t.kind == Tok::Word {
            if let Some((_, to)) = RENAMED_CALLS.iter().find(|(f, _)| t.text.eq_ignore_ascii_case(f)) {
                let a = next(i + 1);
                if a < bound && toks[a].kind == Tok::LParen {
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
                if a < bound && toks[a].kind == Tok::LParen {
                    if let Some(end) = parens.close[a] {
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
            if a < bound && toks[a].kind == Tok::LParen {
                if t.is_word("version") {
                    let close = next(a + 1);
                    if close < bound && toks[close].kind == Tok::RParen {
                        if let Some(v) = setting("version()") {
                            out.push_str(&quote_str(&v));
                            i = close + 1;
                            continue;
                        }
                    }
                } else {
                    let s = next(a + 1);
                    if s < bound && toks[s].kind == Tok::Str {
                        let mut close = next(s + 1);
                        if close < bound && toks[close].kind == Tok::Comma {
                            close = next(next(close + 1) + 1);
                        }
                        if close < bound && toks[close].kind == Tok::RParen {
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
    fn nested_rewrites_match_the_recursive_definition() {
        let none = |_: &str| None;
        let cases = [
            (
                "select date_trunc('hour', extract(epoch from t)) x",
                "select date_trunc('hour', ((epoch_us(t) / 1000000.0))::TIMESTAMP)::TIMESTAMPTZ x",
            ),
            (
                "select extract(hour from date_trunc( 'day' , x ) ) , 1",
                "select extract(hour from (date_trunc('day', (x)::TIMESTAMP)::TIMESTAMPTZ)::TIMESTAMP) , 1",
            ),
            (
                "select pg_get_expr(extract(epoch from a), b, true) from t",
                "select pg_get_expr((epoch_us(a) / 1000000.0), b) from t",
            ),
            (
                "select extract(epoch from (select max(t) from x))",
                "select (epoch_us((select max(t) from x)) / 1000000.0)",
            ),
            // Unbalanced or malformed calls are left as they are.
            ("select extract(epoch from t", "select extract(epoch from t"),
            ("select date_trunc('a', b, c)", "select date_trunc('a', b, c)"),
            ("select pg_get_expr(a, b)) )", "select pg_get_expr(a, b)) )"),
            (") extract(epoch from x)", ") (epoch_us(x) / 1000000.0)"),
        ];
        for (input, want) in cases {
            assert_eq!(rewrite(input, &none, &[]), want, "{input}");
        }
    }

    #[test]
    fn deep_nesting_needs_no_stack() {
        // The attack: ~100 KB nested 5,000 deep, rewritten on a thread with a 64 KiB stack
        // (a recursive rewrite overflows it within a few hundred levels).
        let run = || {
            let depth = 5_000;
            let none = |_: &str| None;
            for (open, close, marker) in [
                ("extract(epoch from ", ")", "epoch_us("),
                ("date_trunc('hour', ", ")", "::TIMESTAMPTZ"),
                ("pg_get_expr(", ", 1, true)", "pg_get_expr("),
                ("extract(hour from ", ")", "::TIMESTAMP)"),
            ] {
                let q = format!("SELECT {}x{}", open.repeat(depth), close.repeat(depth));
                let r = rewrite(&q, &none, &[]);
                assert_eq!(r.matches(marker).count(), depth, "{open}");
                assert!(split(&q).len() == 1 && !normalize(&q).is_empty());
            }
            let parens = format!("SELECT {}1{}", "(".repeat(50_000), ")".repeat(50_000));
            assert_eq!(rewrite(&parens, &none, &[]), parens);
        };
        let t = std::thread::Builder::new().stack_size(64 * 1024).spawn(run).expect("thread");
        assert!(t.join().is_ok(), "rewriting deep nesting must not use the call stack");
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
