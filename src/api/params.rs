//! Query-parameter parsing shared by the API handlers: instants given as RFC 3339
//! (`2026-11-21T10:00:00Z`, any offset), a bare date (`2026-11-21`, midnight UTC) or Unix time in
//! seconds or milliseconds; all become microseconds since the epoch (UTC).

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
    use super::parse_instant;

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
