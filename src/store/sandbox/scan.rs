//! A JSON reader for DuckDB's serialized syntax trees that never recurses: one pass over the text
//! with an explicit stack (on the heap), so a statement nested 100,000 deep costs memory in
//! proportion to its size and nothing else. It keeps only what the sandbox decides on: the
//! top-level error fields, how many statements there are, every `function_name`, the tables and
//! `SHOW` references the statement reads.

/// Why a text is not JSON (DuckDB never produces one; the fuzz targets do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    pub offset: usize,
    pub message: &'static str,
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

/// A `SHOW` / `DESCRIBE` / `SUMMARIZE` reference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShowRef {
    pub show_type: String,
    pub table_name: String,
}

/// What the sandbox needs to know about one serialized statement list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The top-level `"error": true` (DuckDB could not or would not serialize the SQL).
    pub error: bool,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    /// Elements of the top-level `statements` array.
    pub statements: usize,
    /// Every `function_name` value, in order of appearance.
    pub functions: Vec<String>,
    /// `table_name` of every `BASE_TABLE` reference.
    pub tables: Vec<String>,
    pub shows: Vec<ShowRef>,
}

/// Fields of one object that matter once it closes.
#[derive(Default)]
struct ObjectFields {
    ty: Option<String>,
    table_name: Option<String>,
    show_type: Option<String>,
}

enum Frame {
    Object { key: Option<String>, fields: ObjectFields },
    Array { elements: usize },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A value (at the top, after `:`, or as an array element).
    Value,
    /// A key or `}` right after `{`.
    FirstKey,
    /// A key after `,` in an object.
    Key,
    /// `,` or the closing bracket of the innermost container.
    Next,
    /// Only whitespace until the end.
    End,
}

/// Scan `text`. Linear time; memory bounded by the nesting depth (a few words per level) plus
/// the strings kept in the summary.
pub fn scan(text: &str) -> Result<Summary, ScanError> {
    let b = text.as_bytes();
    let mut out = Summary::default();
    let mut stack: Vec<Frame> = Vec::new();
    let mut expect = Expect::Value;
    let mut i = 0usize;
    let err = |offset: usize, message: &'static str| ScanError { offset, message };
    loop {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
        }
        if i >= b.len() {
            return if expect == Expect::End { Ok(out) } else { Err(err(i, "unexpected end of input")) };
        }
        let c = b[i];
        match expect {
            Expect::End => return Err(err(i, "trailing characters after the document")),
            Expect::FirstKey | Expect::Key => {
                if c == b'}' && expect == Expect::FirstKey {
                    i += 1;
                    close(&mut stack, &mut out, &mut expect);
                    continue;
                }
                if c != b'"' {
                    return Err(err(i, "expected a key"));
                }
                let (key, end) = string(b, i)?;
                i = skip_ws(b, end);
                if b.get(i) != Some(&b':') {
                    return Err(err(i, "expected ':' after a key"));
                }
                i += 1;
                if let Some(Frame::Object { key: k, .. }) = stack.last_mut() {
                    *k = Some(key);
                }
                expect = Expect::Value;
            }
            Expect::Next => {
                i += 1;
                match (c, stack.last()) {
                    (b',', Some(Frame::Object { .. })) => expect = Expect::Key,
                    (b',', Some(Frame::Array { .. })) => expect = Expect::Value,
                    (b'}', Some(Frame::Object { .. })) | (b']', Some(Frame::Array { .. })) => {
                        close(&mut stack, &mut out, &mut expect)
                    }
                    _ => return Err(err(i - 1, "expected ',' or a closing bracket")),
                }
            }
            Expect::Value => {
                // An array element: count it (the top-level `statements` array is what counts).
                if let Some(Frame::Array { elements }) = stack.last_mut() {
                    if c == b']' && *elements == 0 {
                        i += 1;
                        close(&mut stack, &mut out, &mut expect);
                        continue;
                    }
                    *elements += 1;
                }
                match c {
                    b'{' => {
                        i += 1;
                        stack.push(Frame::Object { key: None, fields: ObjectFields::default() });
                        expect = Expect::FirstKey;
                    }
                    b'[' => {
                        i += 1;
                        stack.push(Frame::Array { elements: 0 });
                        expect = Expect::Value;
                    }
                    b'"' => {
                        let (s, end) = string(b, i)?;
                        i = end;
                        string_value(&mut stack, &mut out, s);
                        expect = after_value(&stack);
                    }
                    b't' | b'f' | b'n' => {
                        let word: &[u8] = match c {
                            b't' => b"true",
                            b'f' => b"false",
                            _ => b"null",
                        };
                        if !b[i..].starts_with(word) {
                            return Err(err(i, "invalid literal"));
                        }
                        i += word.len();
                        if word == b"true" && stack.len() == 1 && current_key(&stack) == Some("error") {
                            out.error = true;
                        }
                        expect = after_value(&stack);
                    }
                    b'-' | b'0'..=b'9' => {
                        let start = i;
                        i += 1;
                        while i < b.len() && matches!(b[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                            i += 1;
                        }
                        if !b[start..i].iter().any(u8::is_ascii_digit) {
                            return Err(err(start, "invalid number"));
                        }
                        expect = after_value(&stack);
                    }
                    _ => return Err(err(i, "expected a value")),
                }
            }
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

fn after_value(stack: &[Frame]) -> Expect {
    if stack.is_empty() {
        Expect::End
    } else {
        Expect::Next
    }
}

fn current_key(stack: &[Frame]) -> Option<&str> {
    match stack.last() {
        Some(Frame::Object { key, .. }) => key.as_deref(),
        _ => None,
    }
}

/// A string value under the current key of the innermost object.
fn string_value(stack: &mut [Frame], out: &mut Summary, s: String) {
    let depth = stack.len();
    let Some(Frame::Object { key: Some(key), fields }) = stack.last_mut() else { return };
    match key.as_str() {
        "function_name" => out.functions.push(s.to_ascii_lowercase()),
        "type" => fields.ty = Some(s),
        "table_name" => fields.table_name = Some(s),
        "show_type" => fields.show_type = Some(s),
        "error_type" if depth == 1 => out.error_type = Some(s),
        "error_message" if depth == 1 => out.error_message = Some(s),
        _ => {}
    }
}

/// Close the innermost container, record what it was, and expect what follows it.
fn close(stack: &mut Vec<Frame>, out: &mut Summary, expect: &mut Expect) {
    let frame = stack.pop();
    match frame {
        Some(Frame::Object { fields, .. }) => match fields.ty.as_deref() {
            Some("BASE_TABLE") => out.tables.push(fields.table_name.unwrap_or_default()),
            Some("SHOW_REF") => out.shows.push(ShowRef {
                show_type: fields.show_type.unwrap_or_default(),
                table_name: fields.table_name.unwrap_or_default(),
            }),
            _ => {}
        },
        Some(Frame::Array { elements }) if stack.len() == 1 && current_key(stack) == Some("statements") => {
            out.statements = elements;
        }
        Some(Frame::Array { .. }) | None => {}
    }
    *expect = after_value(stack);
}

/// The string starting at the quote at `i`, unescaped, and the index just past its closing quote.
fn string(b: &[u8], i: usize) -> Result<(String, usize), ScanError> {
    let mut out: Vec<u8> = Vec::new();
    let mut j = i + 1;
    loop {
        let Some(&c) = b.get(j) else {
            return Err(ScanError { offset: i, message: "unterminated string" });
        };
        match c {
            b'"' => break,
            b'\\' => {
                let Some(&e) = b.get(j + 1) else {
                    return Err(ScanError { offset: j, message: "unterminated escape" });
                };
                j += 2;
                match e {
                    b'"' | b'\\' | b'/' => out.push(e),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'u' => {
                        let hi = hex4(b, j).ok_or(ScanError { offset: j, message: "invalid \\u escape" })?;
                        j += 4;
                        let mut code = u32::from(hi);
                        if (0xD800..0xDC00).contains(&code) && b.get(j) == Some(&b'\\') && b.get(j + 1) == Some(&b'u') {
                            if let Some(lo) = hex4(b, j + 2).filter(|lo| (0xDC00..0xE000).contains(lo)) {
                                code = 0x10000 + ((code - 0xD800) << 10) + (u32::from(lo) - 0xDC00);
                                j += 6;
                            }
                        }
                        let ch = char::from_u32(code).unwrap_or('\u{FFFD}');
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    _ => return Err(ScanError { offset: j - 1, message: "invalid escape" }),
                }
            }
            c if c < 0x20 => return Err(ScanError { offset: j, message: "control character in a string" }),
            c => {
                out.push(c);
                j += 1;
            }
        }
    }
    // The input is a &str and escapes produce whole characters, so this never replaces anything.
    Ok((String::from_utf8_lossy(&out).into_owned(), j + 1))
}

fn hex4(b: &[u8], j: usize) -> Option<u16> {
    let s = b.get(j..j + 4)?;
    let s = std::str::from_utf8(s).ok()?;
    u16::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_the_sandbox_needs() {
        let json = r#"{"error":false,"statements":[{"node":{"type":"SELECT_NODE","select_list":[
            {"class":"FUNCTION","function_name":"SUM","children":[{"class":"COLUMN_REF"}]},
            {"class":"FUNCTION","function_name":"json_execute_serialized_sql","children":[]}],
            "from_table":{"type":"JOIN","left":{"type":"BASE_TABLE","table_name":"spans"},
            "right":{"type":"TABLE_FUNCTION","function":{"function_name":"range","x":[1,2.5e3,-3,true,null]}}},
            "s":{"type":"SHOW_REF","show_type":"SHOW","table_name":"temp_directory"}}}]}"#;
        let s = scan(json).expect("scan");
        assert!(!s.error);
        assert_eq!(s.statements, 1);
        assert_eq!(s.functions, vec!["sum", "json_execute_serialized_sql", "range"]);
        assert_eq!(s.tables, vec!["spans"]);
        assert_eq!(s.shows, vec![ShowRef { show_type: "SHOW".into(), table_name: "temp_directory".into() }]);
    }

    #[test]
    fn errors_and_statement_counts() {
        let s = scan(r#"{"error":true,"error_type":"not implemented","error_message":"Only SELECT"}"#).expect("scan");
        assert!(s.error);
        assert_eq!(s.error_type.as_deref(), Some("not implemented"));
        assert_eq!(s.error_message.as_deref(), Some("Only SELECT"));
        assert_eq!(scan(r#"{"error":false,"statements":[]}"#).expect("empty").statements, 0);
        assert_eq!(scan(r#"{"error":false,"statements":[{},{"a":[]}]}"#).expect("two").statements, 2);
        // A nested "error": true is not the top-level flag.
        assert!(!scan(r#"{"x":{"error":true},"statements":[{}]}"#).expect("nested").error);
    }

    #[test]
    fn escapes_are_decoded() {
        let s = scan(r#"{"function_name":"g\u0065t\"env\\\ud83d\ude00\n"}"#).expect("scan");
        assert_eq!(s.functions, vec!["get\"env\\\u{1F600}\n"]);
    }

    #[test]
    fn deep_nesting_needs_no_stack() {
        let depth = 200_000;
        let mut json = String::new();
        for _ in 0..depth {
            json.push_str(r#"{"function_name":"abs","children":["#);
        }
        for _ in 0..depth {
            json.push_str("]}");
        }
        let s = scan(&json).expect("deep");
        assert_eq!(s.functions.len(), depth);
        assert!(scan(&"[".repeat(1_000_000)).is_err());
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            "",
            "{",
            "}",
            "[1,]",
            "{\"a\"}",
            "{\"a\":}",
            "\"abc",
            "{\"a\":1}x",
            "[tru]",
            "{\"a\":\"\\u12\"}",
            "-",
            "[\"\u{1}\"]",
            "{1:2}",
            "[1 2]",
            "{\"a\":1,}",
        ] {
            assert!(scan(bad).is_err(), "{bad:?}");
        }
        for good in ["{}", "[]", "1", "\"x\"", "null", " [ {} , [ ] ] "] {
            assert!(scan(good).is_ok(), "{good:?}");
        }
    }
}
