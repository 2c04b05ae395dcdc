//! Small, quote-aware rewrites that let common Postgres-style SQL run on our DuckDB build. The
//! bundled DuckDB has no ICU extension, so `TIMESTAMP WITH TIME ZONE` supports no arithmetic:
//! `now() - INTERVAL '1 hour'` fails. Stored times are UTC `TIMESTAMP`s, so the current time is
//! rewritten to a UTC `TIMESTAMP` as well (`now()` -> `CAST(now() AS TIMESTAMP)`, same for
//! `current_timestamp`, `transaction_timestamp()` and `localtimestamp`). String literals (`'..'`,
//! `E'..'` with backslash escapes, `$$..$$`, `$tag$..$tag$`), quoted identifiers and comments
//! (nested `/* /* */ */` too) are left untouched. One pass, no recursion. Used by every SQL
//! surface (HTTP and Postgres wire).

use std::borrow::Cow;

/// Rewrite `sql` for DuckDB; borrows when nothing changes.
pub fn rewrite(sql: &str) -> Cow<'_, str> {
    let b = sql.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0; // bytes of `sql` already copied into `out`
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' | b'"' => i = skip_quoted(b, i, c, false),
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_block_comment(b, i),
            b'$' => i = skip_dollar(sql, i),
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80) {
                    i += 1;
                }
                // E'...': a string with backslash escapes (`E'it\'s now()'`).
                if i - start == 1 && matches!(c, b'e' | b'E') && b.get(i) == Some(&b'\'') {
                    i = skip_quoted(b, i, b'\'', true);
                    continue;
                }
                let qualified = start > 0 && b[start - 1] == b'.';
                if qualified || c >= 0x80 {
                    continue;
                }
                let word = &sql[start..i];
                let end = match word.to_ascii_lowercase().as_str() {
                    "now" | "transaction_timestamp" | "statement_timestamp" => empty_call_end(b, i),
                    "current_timestamp" | "localtimestamp" => Some(optional_call_end(b, i)),
                    _ => None,
                };
                if let Some(end) = end {
                    let o = out.get_or_insert_with(|| String::with_capacity(sql.len() + 32));
                    o.push_str(&sql[copied..start]);
                    o.push_str("CAST(");
                    o.push_str(&sql[start..end]);
                    o.push_str(" AS TIMESTAMP)");
                    copied = end;
                    i = end;
                }
            }
            _ => i += 1,
        }
    }
    match out {
        None => Cow::Borrowed(sql),
        Some(mut o) => {
            o.push_str(&sql[copied..]);
            Cow::Owned(o)
        }
    }
}

/// Index just past a quoted token starting at `i` (doubled quotes escape; with `backslash`,
/// so does a backslash).
fn skip_quoted(b: &[u8], mut i: usize, q: u8, backslash: bool) -> usize {
    i += 1;
    while i < b.len() {
        if backslash && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// Index just past a block comment starting at `i` (`/* .. */`, nested ones counted).
fn skip_block_comment(b: &[u8], mut i: usize) -> usize {
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

/// Index just past what starts with `$` at `i`: a `$tag$..$tag$` / `$$..$$` string, a `$1`
/// parameter, or the lone character.
fn skip_dollar(sql: &str, i: usize) -> usize {
    let b = sql.as_bytes();
    let mut j = i + 1;
    if b.get(j).is_some_and(u8::is_ascii_digit) {
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        return j;
    }
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80) {
        j += 1;
    }
    if b.get(j) != Some(&b'$') {
        return i + 1;
    }
    let tag = &sql[i..=j];
    let body = j + 1;
    sql[body..].find(tag).map(|p| body + p + tag.len()).unwrap_or(b.len())
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// `()` right after a function name (whitespace allowed): the end of the call.
fn empty_call_end(b: &[u8], i: usize) -> Option<usize> {
    let j = skip_ws(b, i);
    if b.get(j) != Some(&b'(') {
        return None;
    }
    let k = skip_ws(b, j + 1);
    (b.get(k) == Some(&b')')).then_some(k + 1)
}

/// `current_timestamp` may carry a precision: `current_timestamp(3)`.
fn optional_call_end(b: &[u8], i: usize) -> usize {
    let j = skip_ws(b, i);
    if b.get(j) != Some(&b'(') {
        return i;
    }
    let mut k = j + 1;
    while k < b.len() && (b[k].is_ascii_digit() || b[k].is_ascii_whitespace()) {
        k += 1;
    }
    if b.get(k) == Some(&b')') {
        k + 1
    } else {
        i
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn rewrites_current_time_outside_quotes_only() {
        let cases = [
            ("SELECT 1", "SELECT 1"),
            ("SELECT now() - INTERVAL '1 hour'", "SELECT CAST(now() AS TIMESTAMP) - INTERVAL '1 hour'"),
            ("select NOW ( )", "select CAST(NOW ( ) AS TIMESTAMP)"),
            ("SELECT current_timestamp", "SELECT CAST(current_timestamp AS TIMESTAMP)"),
            ("SELECT CURRENT_TIMESTAMP(3)+1", "SELECT CAST(CURRENT_TIMESTAMP(3) AS TIMESTAMP)+1"),
            ("SELECT 'now()', \"now\" FROM t", "SELECT 'now()', \"now\" FROM t"),
            ("SELECT 'it''s now()' -- now()\n, now", "SELECT 'it''s now()' -- now()\n, now"),
            ("SELECT /* now() */ t.now FROM t", "SELECT /* now() */ t.now FROM t"),
            ("SELECT nowhere, now(x)", "SELECT nowhere, now(x)"),
            ("SELECT localtimestamp", "SELECT CAST(localtimestamp AS TIMESTAMP)"),
            ("SELECT 'unterminated now()", "SELECT 'unterminated now()"),
            // Literals of every kind keep their text.
            ("SELECT $$now()$$, now()", "SELECT $$now()$$, CAST(now() AS TIMESTAMP)"),
            ("SELECT $t$ current_timestamp $t$ x", "SELECT $t$ current_timestamp $t$ x"),
            ("SELECT $a$ $b$ now() $b$ $a$, $1", "SELECT $a$ $b$ now() $b$ $a$, $1"),
            ("SELECT E'it\\'s now()', e'\\\\', now()", "SELECT E'it\\'s now()', e'\\\\', CAST(now() AS TIMESTAMP)"),
            ("SELECT \"now\"(), \"current_timestamp\"", "SELECT \"now\"(), \"current_timestamp\""),
            ("SELECT /* /* now() */ now() */ 1", "SELECT /* /* now() */ now() */ 1"),
            ("SELECT a$now(), now", "SELECT a$now(), now"),
            ("SELECT $1 + now()", "SELECT $1 + CAST(now() AS TIMESTAMP)"),
            ("SELECT $$unterminated now()", "SELECT $$unterminated now()"),
            ("SELECT é.now(), ünow()", "SELECT é.now(), ünow()"),
        ];
        for (input, want) in cases {
            assert_eq!(rewrite(input), want, "{input}");
        }
    }
}
