//! Grafana's query expansion for its PostgreSQL datasource, for tests: template variables the way
//! the frontend (`SqlDatasource.interpolateVariable`) substitutes them, then the backend's global
//! substitutions (`sqleng.Interpolate`) and macros (`postgresMacroEngine`), as documented in
//! `shared/reference/grafana-postgres.md` section 4. Times are UTC nanoseconds since the epoch.
#![allow(dead_code)]

use std::fmt::Write as _;

/// A dashboard time range (what Grafana sends as `from`/`to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from_ns: i64,
    pub to_ns: i64,
}

/// The current value of a template variable.
#[derive(Debug, Clone, PartialEq)]
pub enum Current {
    One(String),
    Many(Vec<String>),
    All,
}

/// A template variable as the dashboard defines it, with its current value.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    pub name: String,
    pub multi: bool,
    pub include_all: bool,
    /// A custom "All" value: substituted verbatim (no quoting), as Grafana does.
    pub all_value: Option<String>,
    /// The values the variable's query returned (what "All" means without a custom value).
    pub options: Vec<String>,
    pub current: Current,
}

/// Everything one query expansion needs.
#[derive(Debug, Clone)]
pub struct Context {
    pub range: TimeRange,
    /// `$__interval`, in milliseconds.
    pub interval_ms: i64,
    /// The datasource's TimescaleDB switch (changes `$__timeGroup`).
    pub timescaledb: bool,
    pub variables: Vec<Variable>,
}

/// Why Grafana would refuse a query.
#[derive(Debug, Clone, PartialEq)]
pub enum ExpandError {
    UnknownMacro(String),
    MissingArgument(String),
    BadInterval(String),
}

impl Context {
    pub fn new(range: TimeRange, interval_ms: i64) -> Self {
        Self { range, interval_ms, timescaledb: false, variables: Vec::new() }
    }

    /// Template variables, then global substitutions, then macros: the text Grafana sends.
    pub fn expand(&self, sql: &str) -> Result<String, ExpandError> {
        let sql = self.interpolate_variables(sql);
        let sql = self.interpolate_globals(&sql);
        self.interpolate_macros(&sql)
    }

    /// Frontend step: `$name`, `${name}` and `[[name]]` for known variables; unknown names (the
    /// `$__` macros included) stay as they are.
    pub fn interpolate_variables(&self, sql: &str) -> String {
        let mut out = String::with_capacity(sql.len());
        let mut rest = sql;
        while let Some(i) = rest.find(['$', '[']) {
            out.push_str(&rest[..i]);
            let tail = &rest[i..];
            let (name, len) = if let Some(t) = tail.strip_prefix("${") {
                match t.find('}') {
                    Some(end) if is_word(&t[..end]) => (&t[..end], end + 3),
                    _ => ("", 0),
                }
            } else if let Some(t) = tail.strip_prefix("[[") {
                match t.find("]]") {
                    Some(end) if is_word(&t[..end]) => (&t[..end], end + 4),
                    _ => ("", 0),
                }
            } else if let Some(t) = tail.strip_prefix('$') {
                let end = t.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(t.len());
                (&t[..end], end + 1)
            } else {
                ("", 0)
            };
            match self.variables.iter().find(|v| !name.is_empty() && v.name == name) {
                Some(var) => {
                    out.push_str(&format_variable(var));
                    rest = &tail[len..];
                }
                None => {
                    let first = tail.chars().next().map_or(1, char::len_utf8);
                    out.push_str(&tail[..first]);
                    rest = &tail[first..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// Backend step 1 (`sqleng.Interpolate`): plain string replacement, in this order.
    pub fn interpolate_globals(&self, sql: &str) -> String {
        sql.replace("$__interval_ms", &self.interval_ms.to_string())
            .replace("$__interval", &format_interval(self.interval_ms))
            .replace("$__unixEpochFrom()", &self.range.from_ns.div_euclid(NANOS).to_string())
            .replace("$__unixEpochTo()", &self.range.to_ns.div_euclid(NANOS).to_string())
    }

    /// Backend step 2: every `\$([_a-zA-Z0-9]+)\(([^\)]*)\)`, left to right, args split on `,`
    /// and trimmed of spaces.
    pub fn interpolate_macros(&self, sql: &str) -> Result<String, ExpandError> {
        let mut out = String::with_capacity(sql.len());
        let bytes = sql.as_bytes();
        let mut copied = 0;
        let mut i = 0;
        while i < bytes.len() {
            if let Some((name, args, end)) = macro_at(sql, i) {
                out.push_str(&sql[copied..i]);
                let whole = &sql[i..end];
                let mut name = name;
                // Pre-5.3 compatibility: a `$__timeGroup(..)` followed directly by `,` gets the
                // alias. Grafana looks at the first occurrence of the same text in the query.
                if name == "__timeGroup" {
                    if let Some(at) = sql.find(whole) {
                        if sql.as_bytes().get(at + whole.len()) == Some(&b',') {
                            name = "__timeGroupAlias";
                        }
                    }
                }
                let args: Vec<&str> = args.split(',').map(|a| a.trim_matches(' ')).collect();
                out.push_str(&self.evaluate(name, &args)?);
                copied = end;
                i = end;
            } else {
                i += 1;
            }
        }
        out.push_str(&sql[copied..]);
        Ok(out)
    }

    fn evaluate(&self, name: &str, args: &[&str]) -> Result<String, ExpandError> {
        let (from, to) = (self.range.from_ns, self.range.to_ns);
        // Go splits "" into [""], so a column argument is always present (possibly empty).
        let column = || args.first().copied().ok_or_else(|| ExpandError::MissingArgument(name.to_string()));
        Ok(match name {
            "__time" => format!("{} AS \"time\"", column()?),
            "__timeEpoch" => format!("extract(epoch from {}) as \"time\"", column()?),
            "__timeFilter" => format!("{} BETWEEN '{}' AND '{}'", column()?, rfc3339_nano(from), rfc3339_nano(to)),
            "__timeFrom" => format!("'{}'", rfc3339_nano(from)),
            "__timeTo" => format!("'{}'", rfc3339_nano(to)),
            "__timeGroup" => {
                let seconds = group_seconds(name, args)?;
                if self.timescaledb {
                    format!("time_bucket('{seconds:.3}s',{})", args[0])
                } else {
                    let s = go_float(seconds);
                    format!("floor(extract(epoch from {})/{s})*{s}", args[0])
                }
            }
            "__timeGroupAlias" => format!("{} AS \"time\"", self.evaluate("__timeGroup", args)?),
            "__unixEpochFilter" => {
                let c = column()?;
                format!("{c} >= {} AND {c} <= {}", from.div_euclid(NANOS), to.div_euclid(NANOS))
            }
            "__unixEpochNanoFilter" => {
                let c = column()?;
                format!("{c} >= {from} AND {c} <= {to}")
            }
            "__unixEpochNanoFrom" => from.to_string(),
            "__unixEpochNanoTo" => to.to_string(),
            "__unixEpochGroup" => {
                let s = go_float(group_seconds(name, args)?);
                format!("floor(({})/{s})*{s}", args[0])
            }
            "__unixEpochGroupAlias" => format!("{} AS \"time\"", self.evaluate("__unixEpochGroup", args)?),
            other => return Err(ExpandError::UnknownMacro(other.to_string())),
        })
    }
}

const NANOS: i64 = 1_000_000_000;

fn is_word(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `$name(args)` starting at byte `i`: (name, args, end).
fn macro_at(sql: &str, i: usize) -> Option<(&str, &str, usize)> {
    let rest = sql.get(i..)?.strip_prefix('$')?;
    let name_len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
    if name_len == 0 {
        return None;
    }
    let after = rest[name_len..].strip_prefix('(')?;
    let close = after.find(')')?;
    let end = i + 1 + name_len + 1 + close + 1;
    Some((&rest[..name_len], &after[..close], end))
}

/// The second argument of a grouping macro, in seconds.
fn group_seconds(name: &str, args: &[&str]) -> Result<f64, ExpandError> {
    if args.len() < 2 {
        return Err(ExpandError::MissingArgument(name.to_string()));
    }
    let text = args[1].trim_matches('\'');
    parse_interval_ms(text).map(|ms| ms as f64 / 1000.0).ok_or_else(|| ExpandError::BadInterval(args[1].to_string()))
}

/// `gtime.ParseInterval` for the forms dashboards use: a whole number and one unit
/// (`ms`, `s`, `m`, `h`, `d`, `w`, `y` = 365 days).
pub fn parse_interval_ms(text: &str) -> Option<i64> {
    let digits = text.find(|c: char| !c.is_ascii_digit())?;
    let n: i64 = text[..digits].parse().ok()?;
    let unit = match &text[digits..] {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        "y" => 365 * 86_400_000,
        _ => return None,
    };
    Some(n * unit)
}

/// `gtime.FormatInterval`: the largest whole unit.
pub fn format_interval(ms: i64) -> String {
    const UNITS: [(i64, &str); 6] =
        [(365 * 86_400_000, "y"), (86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1_000, "s"), (1, "ms")];
    for (size, unit) in UNITS {
        if ms >= size {
            return format!("{}{unit}", ms / size);
        }
    }
    "1ms".to_string()
}

/// Go's `%v` of a float64 (`%g`, shortest digits): `%e` form with a two-digit exponent when the
/// decimal exponent is below -4 or at least 6 (so 12d is `1.0368e+06`), plain decimal otherwise.
pub fn go_float(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    // Rust's `{:e}` is the shortest round-trip form, e.g. `1.0368e6`, `3e2`, `2e-2`.
    let e = format!("{v:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((e.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    // Plain decimal with the shortest digits.
    let s = format!("{v}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// How the postgres datasource writes a variable's value into SQL (`interpolateVariable` plus
/// `quoteLiteral`); a custom All value goes in verbatim.
pub fn format_variable(var: &Variable) -> String {
    let quote = |v: &str| format!("'{}'", v.replace('\'', "''"));
    match &var.current {
        Current::All => match &var.all_value {
            Some(custom) => custom.clone(),
            None => var.options.iter().map(|v| quote(v)).collect::<Vec<_>>().join(","),
        },
        Current::Many(values) => values.iter().map(|v| quote(v)).collect::<Vec<_>>().join(","),
        Current::One(v) if var.multi || var.include_all => quote(v),
        Current::One(v) => v.replace('\'', "''"),
    }
}

/// Go's `time.RFC3339Nano` in UTC: `2018-04-12T18:00:00Z`, `1960-02-01T07:00:00.5Z`.
pub fn rfc3339_nano(ns: i64) -> String {
    let secs = ns.div_euclid(NANOS);
    let frac = ns.rem_euclid(NANOS);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    let mut s = format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}", tod / 3600, tod % 3600 / 60, tod % 60);
    if frac != 0 {
        let digits = format!("{frac:09}");
        let _ = write!(s, ".{}", digits.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// UTC nanoseconds of a civil date and time.
pub fn utc_ns(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32, ns: u32) -> i64 {
    let days = days_from_civil(y, mo, d);
    (days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s)) * NANOS + i64::from(ns)
}

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The expander checked against the exact strings of Grafana's own macro tests
/// (`macros_test.go`) and the datasource's variable quoting.
#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        let from = utc_ns(2018, 4, 12, 18, 0, 0, 0);
        Context::new(TimeRange { from_ns: from, to_ns: from + 300 * NANOS }, 300_000)
    }

    fn x(c: &Context, sql: &str) -> String {
        c.expand(sql).expect(sql)
    }

    #[test]
    fn time_macros() {
        let c = ctx();
        assert_eq!(x(&c, "select $__time(time_column)"), "select time_column AS \"time\"");
        assert_eq!(x(&c, "select min($__time(time_column))"), "select min(time_column AS \"time\")");
        assert_eq!(x(&c, "select $__timeEpoch(t)"), "select extract(epoch from t) as \"time\"");
        assert_eq!(
            x(&c, "WHERE $__timeFilter(time_column)"),
            "WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'"
        );
        assert_eq!(x(&c, "select $__timeFrom()"), "select '2018-04-12T18:00:00Z'");
        assert_eq!(x(&c, "select $__timeTo()"), "select '2018-04-12T18:05:00Z'");
    }

    #[test]
    fn time_group() {
        let c = ctx();
        assert_eq!(
            x(&c, "SELECT $__timeGroup(time_column,'5m'), value"),
            "SELECT floor(extract(epoch from time_column)/300)*300 AS \"time\", value"
        );
        assert_eq!(
            x(&c, "SELECT $__timeGroup(time_column,'5m') as time, value"),
            "SELECT floor(extract(epoch from time_column)/300)*300 as time, value"
        );
        assert_eq!(
            x(&c, "SELECT $__timeGroup(time_column,'5m')"),
            "SELECT floor(extract(epoch from time_column)/300)*300"
        );
        assert_eq!(
            x(&c, "SELECT $__timeGroupAlias(time_column,'5m')"),
            "SELECT floor(extract(epoch from time_column)/300)*300 AS \"time\""
        );
        assert_eq!(x(&c, "$__timeGroup(time_column , '5m')"), "floor(extract(epoch from time_column)/300)*300");
        assert_eq!(
            x(&c, "$__timeGroupAlias(time_column , '5m')"),
            "floor(extract(epoch from time_column)/300)*300 AS \"time\""
        );
        // The fill argument does not change the SQL; `$__interval` works unquoted.
        assert_eq!(x(&c, "$__timeGroup(t, '5m', NULL)"), "floor(extract(epoch from t)/300)*300");
        assert_eq!(
            x(&c, "$__timeGroupAlias(time, $__interval)"),
            "floor(extract(epoch from time)/300)*300 AS \"time\""
        );
        assert_eq!(x(&c, "$__timeGroup(t, '20ms')"), "floor(extract(epoch from t)/0.02)*0.02");
        assert_eq!(x(&c, "$__timeGroup(t, '12d')"), "floor(extract(epoch from t)/1.0368e+06)*1.0368e+06");
        let mut ts = ctx();
        ts.timescaledb = true;
        assert_eq!(x(&ts, "GROUP BY $__timeGroup(time_column,'5m')"), "GROUP BY time_bucket('300.000s',time_column)");
        assert_eq!(x(&ts, "GROUP BY $__timeGroup(time_column , '5m')"), "GROUP BY time_bucket('300.000s',time_column)");
        assert_eq!(
            x(&ts, "GROUP BY $__timeGroup(time_column , '12d')"),
            "GROUP BY time_bucket('1036800.000s',time_column)"
        );
        assert_eq!(x(&ts, "GROUP BY $__timeGroup(time_column , '20ms')"), "GROUP BY time_bucket('0.020s',time_column)");
    }

    #[test]
    fn epoch_macros() {
        let c = ctx();
        assert_eq!(x(&c, "select $__unixEpochFilter(time)"), "select time >= 1523556000 AND time <= 1523556300");
        assert_eq!(
            x(&c, "select $__unixEpochNanoFilter(time)"),
            "select time >= 1523556000000000000 AND time <= 1523556300000000000"
        );
        assert_eq!(x(&c, "select $__unixEpochNanoFrom()"), "select 1523556000000000000");
        assert_eq!(x(&c, "select $__unixEpochNanoTo()"), "select 1523556300000000000");
        assert_eq!(x(&c, "select $__unixEpochFrom(), $__unixEpochTo()"), "select 1523556000, 1523556300");
        assert_eq!(
            x(&c, "SELECT $__unixEpochGroup(time_column+time_adjustment,'5m')"),
            "SELECT floor((time_column+time_adjustment)/300)*300"
        );
        assert_eq!(
            x(&c, "SELECT $__unixEpochGroupAlias(time_column+time_adjustment,'5m')"),
            "SELECT floor((time_column+time_adjustment)/300)*300 AS \"time\""
        );
    }

    #[test]
    fn interval_and_errors() {
        let mut c = ctx();
        assert_eq!(x(&c, "$__interval $__interval_ms"), "5m 300000");
        for (ms, text) in [(30_000, "30s"), (3_600_000, "1h"), (100, "100ms"), (90_000, "1m"), (0, "1ms")] {
            c.interval_ms = ms;
            assert_eq!(x(&c, "$__interval"), text);
        }
        assert_eq!(c.expand("select $__nope(x)"), Err(ExpandError::UnknownMacro("__nope".into())));
        assert_eq!(c.expand("$__timeGroup(t)"), Err(ExpandError::MissingArgument("__timeGroup".into())));
        assert_eq!(c.expand("$__timeGroup(t, 'soon')"), Err(ExpandError::BadInterval("'soon'".into())));
        // A `$` without a call is left alone.
        assert_eq!(x(&c, "select '$5', $1"), "select '$5', $1");
    }

    #[test]
    fn old_and_fractional_ranges() {
        let mut c = ctx();
        c.range = TimeRange { from_ns: utc_ns(1960, 2, 1, 7, 0, 0, 0), to_ns: utc_ns(1965, 2, 3, 8, 0, 0, 0) };
        assert_eq!(
            x(&c, "WHERE $__timeFilter(time_column)"),
            "WHERE time_column BETWEEN '1960-02-01T07:00:00Z' AND '1965-02-03T08:00:00Z'"
        );
        assert_eq!(x(&c, "select $__unixEpochFilter(time)"), "select time >= -312915600 AND time <= -154886400");
        assert_eq!(
            x(&c, "select $__unixEpochNanoFilter(time)"),
            "select time >= -312915600000000000 AND time <= -154886400000000000"
        );
        c.range = TimeRange {
            from_ns: utc_ns(1960, 2, 1, 7, 0, 0, 500_000_000),
            to_ns: utc_ns(1980, 2, 3, 8, 0, 0, 500_000_000),
        };
        assert_eq!(
            x(&c, "WHERE $__timeFilter(time_column)"),
            "WHERE time_column BETWEEN '1960-02-01T07:00:00.5Z' AND '1980-02-03T08:00:00.5Z'"
        );
        assert_eq!(rfc3339_nano(utc_ns(2024, 2, 29, 23, 59, 59, 123_000)), "2024-02-29T23:59:59.000123Z");
        assert_eq!(rfc3339_nano(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn variables() {
        let mut c = ctx();
        let var = |name: &str, current: Current| Variable {
            name: name.into(),
            multi: true,
            include_all: true,
            all_value: None,
            options: vec!["a".into(), "b".into(), "o'neil".into()],
            current,
        };
        c.variables = vec![
            var("agent", Current::Many(vec!["a".into(), "o'neil".into()])),
            var("model", Current::All),
            Variable { multi: false, include_all: false, ..var("single", Current::One("it's".into())) },
            Variable { all_value: Some("'__all'".into()), ..var("custom", Current::All) },
            var("one", Current::One("x".into())),
        ];
        assert_eq!(
            x(&c, "agent_id IN ($agent) AND model IN (${model}) AND [[single]]"),
            "agent_id IN ('a','o''neil') AND model IN ('a','b','o''neil') AND it''s"
        );
        assert_eq!(
            x(&c, "('__all' IN ($custom) OR c IN ($custom)) AND $one"),
            "('__all' IN ('__all') OR c IN ('__all')) AND 'x'"
        );
        // Longer names and macros are not variables.
        assert_eq!(x(&c, "$agent_id, $agents"), "$agent_id, $agents");
        assert_eq!(
            x(&c, "$__timeFilter(time) AND agent_id IN ($agent)"),
            "time BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z' AND agent_id IN ('a','o''neil')"
        );
    }

    #[test]
    fn go_floats() {
        for (v, s) in [
            (300.0, "300"),
            (0.02, "0.02"),
            (1_036_800.0, "1.0368e+06"),
            (86_400.0, "86400"),
            (0.00001, "1e-05"),
            (0.0001, "0.0001"),
            (1.5, "1.5"),
            (999_999.0, "999999"),
            (1e21, "1e+21"),
        ] {
            assert_eq!(go_float(v), s, "{v}");
        }
    }
}
