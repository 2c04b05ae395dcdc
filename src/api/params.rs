//! Query-parameter parsing shared by the API handlers: instants given as RFC 3339
//! (`2026-11-21T10:00:00Z`, any offset), a bare date (`2026-11-21`, midnight UTC) or Unix time in
//! seconds or milliseconds; all become microseconds since the epoch (UTC). Also comma lists
//! checked against the allowed values, page limits and opaque pagination cursors.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// A comma list (`running,idle`) of values from `allowed`, joined again for binding as one
/// parameter (`list_contains(string_split($n, ','), x)`); `None` when absent or empty.
pub fn comma_list(name: &str, value: Option<&str>, allowed: &[&str]) -> Result<Option<String>, String> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let mut out: Vec<&str> = Vec::new();
    for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        if !allowed.contains(&item) {
            return Err(format!("{name} must be a comma list of {}, not {item:?}", allowed.join(", ")));
        }
        out.push(item);
    }
    Ok(Some(out.join(",")))
}

/// A page size: `default` when absent, at least 1, at most `max`.
pub fn page_limit(value: Option<u32>, default: u32, max: u32) -> u32 {
    value.unwrap_or(default).clamp(1, max)
}

/// An opaque cursor for `parts` (base64url of the parts joined by `|`; the last part may hold `|`).
pub fn encode_cursor(parts: &[&str]) -> String {
    URL_SAFE_NO_PAD.encode(parts.join("|"))
}

/// The `n` parts of a cursor made by `encode_cursor`; `None` when it is not one.
pub fn decode_cursor(cursor: &str, n: usize) -> Option<Vec<String>> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let parts: Vec<String> = text.splitn(n, '|').map(str::to_string).collect();
    (parts.len() == n).then_some(parts)
}

/// Parse an instant; `None` when it is not one of the accepted forms.
pub fn parse_instant(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-') && !s[1..].contains('-') {
        let v: f64 = s.parse().ok()?;
        // Seconds up to year ~5138, milliseconds beyond.
        let us = if v.abs() < 1e11 { v * 1e6 } else { v * 1e3 };
        return Some(us as i64);
    }
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let days = crate::civil::parse_ymd(s.get(0..10)?)?;
    if s.len() == 10 {
        return Some(days * 86_400_000_000);
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (h, mi) = (num(11, 2)?, num(14, 2)?);
    let mut i = 16;
    let mut sec = 0;
    let mut frac_us = 0i64;
    if b.get(16) == Some(&b':') {
        sec = num(17, 2)?;
        i = 19;
        if b.get(19) == Some(&b'.') {
            let mut j = 20;
            let mut scale = 100_000i64;
            while j < b.len() && b[j].is_ascii_digit() {
                frac_us += i64::from(b[j] - b'0') * scale;
                scale /= 10;
                j += 1;
            }
            i = j;
        }
    }
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let offset_s = match &s[i..] {
        "" | "Z" | "z" => 0,
        tz if (tz.starts_with('+') || tz.starts_with('-')) && (tz.len() == 6 || tz.len() == 5 || tz.len() == 3) => {
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            let digits: String = tz[1..].chars().filter(|c| *c != ':').collect();
            let oh: i64 = digits.get(0..2)?.parse().ok()?;
            let om: i64 = if digits.len() >= 4 { digits.get(2..4)?.parse().ok()? } else { 0 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    Some(secs * 1_000_000 + frac_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let c = encode_cursor(&["1795257000000000", "3", "a|b"]);
        assert_eq!(decode_cursor(&c, 3), Some(vec!["1795257000000000".into(), "3".into(), "a|b".into()]));
        assert_eq!(decode_cursor(&c, 5), None);
        assert_eq!(decode_cursor("not base64!", 2), None);
    }

    #[test]
    fn comma_lists() {
        let allowed = ["running", "idle", "finished"];
        assert_eq!(comma_list("status", Some(" running, idle "), &allowed), Ok(Some("running,idle".into())));
        assert_eq!(comma_list("status", Some(""), &allowed), Ok(None));
        assert_eq!(comma_list("status", None, &allowed), Ok(None));
        assert!(comma_list("status", Some("running,bogus"), &allowed).is_err());
        assert_eq!(page_limit(None, 100, 1000), 100);
        assert_eq!(page_limit(Some(0), 100, 1000), 1);
        assert_eq!(page_limit(Some(5000), 100, 1000), 1000);
    }

    #[test]
    fn instants() {
        let base = 1_795_257_000_000_000; // 2026-11-21T10:30:00Z
        let cases = [
            ("2026-11-21T10:30:00Z", Some(base)),
            ("2026-11-21T10:30:00.25Z", Some(base + 250_000)),
            ("2026-11-21t10:30:00z", Some(base)),
            ("2026-11-21 10:30:00", Some(base)),
            ("2026-11-21T10:30Z", Some(base)),
            ("2026-11-21T15:30:00+05:00", Some(base)),
            ("2026-11-21T05:30:00-0500", Some(base)),
            ("2026-11-21", Some(base - 37_800_000_000)),
            ("1795257000", Some(base)),
            ("1795257000000", Some(base)),
            ("1795257000.5", Some(base + 500_000)),
            ("1970-01-01T00:00:00Z", Some(0)),
            ("yesterday", None),
            ("2026-13-01", None),
            ("2026-11-21T25:00:00Z", None),
            ("2026-11-21T10:30:00+5", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_instant(s), want, "{s}");
        }
    }
}
