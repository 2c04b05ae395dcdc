//! Every query of every dashboard under `dashboards/` (panel targets and variable queries),
//! expanded the way Grafana's PostgreSQL datasource expands it (`tests/grafana`), run over the
//! Postgres wire protocol (simple query, as Grafana does) against a collector loaded with the
//! captured fixtures, for several variable selections; key panels are checked against
//! independent SQL (`/api/sql`) over the same range.

mod common;
mod grafana;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use grafana::{Context, Current, TimeRange, Variable};
use prost::Message;
use serde_json::Value;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, SimpleQueryMessage};

const CC_SESSION: &str = "f140c7f4-628d-4454-b78d-f488814a62f0";
/// The generated spans sit next to the fixtures (2026-11-21T14:58:51Z).
const GENERATED_NOW_NS: u64 = 1_795_273_131_000_000_000;

/// What a column holds, as Grafana would classify it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Time,
    Number,
    Text,
    Other,
}

/// One query's answer, values as text (as the wire protocol carries them).
#[derive(Debug)]
struct Frame {
    columns: Vec<String>,
    kinds: Vec<Kind>,
    rows: Vec<Vec<Option<String>>>,
}

impl Frame {
    fn col(&self, name: &str) -> usize {
        self.columns.iter().position(|c| c == name).unwrap_or_else(|| panic!("no column {name}: {:?}", self.columns))
    }

    fn numbers(&self, name: &str) -> Vec<f64> {
        let i = self.col(name);
        self.rows.iter().filter_map(|r| r[i].as_deref()).map(|v| v.parse().expect("number")).collect()
    }

    fn sum(&self, name: &str) -> f64 {
        self.numbers(name).iter().sum()
    }

    fn texts(&self, name: &str) -> Vec<String> {
        let i = self.col(name);
        self.rows.iter().map(|r| r[i].clone().unwrap_or_default()).collect()
    }

    fn single_number(&self) -> f64 {
        assert_eq!((self.rows.len(), self.columns.len()), (1, 1), "{self:?}");
        self.rows[0][0].as_deref().expect("value").parse().expect("number")
    }
}

fn kind_of(ty: &Type) -> Kind {
    if [Type::TIMESTAMPTZ, Type::TIMESTAMP, Type::DATE].contains(ty) {
        Kind::Time
    } else if [Type::INT2, Type::INT4, Type::INT8, Type::FLOAT4, Type::FLOAT8, Type::NUMERIC].contains(ty) {
        Kind::Number
    } else if [Type::TEXT, Type::VARCHAR, Type::BPCHAR].contains(ty) {
        Kind::Text
    } else {
        Kind::Other
    }
}

/// Run one expanded query over the wire the way Grafana does: one Simple Query message, text
/// results. Column types come from describing the same SQL (the server maps types the same way
/// on both paths); a simple-query row description carries names only in tokio-postgres.
async fn run(pg: &Client, sql: &str) -> Result<Frame, String> {
    let messages = pg.simple_query(sql).await.map_err(|e| format!("{e}: {:?}", e.as_db_error()))?;
    let mut columns = None;
    let mut rows = Vec::new();
    for m in messages {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                columns = Some(cols.iter().map(|c| c.name().to_string()).collect::<Vec<_>>())
            }
            SimpleQueryMessage::Row(r) => rows.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect()),
            _ => {}
        }
    }
    let columns = columns.ok_or("no row description")?;
    let statement = pg.prepare(sql).await.map_err(|e| format!("describe: {e}"))?;
    let described: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    assert_eq!(described, columns, "{sql}");
    let kinds = statement.columns().iter().map(|c| kind_of(c.type_())).collect();
    Ok(Frame { columns, kinds, rows })
}

/// Connect like Grafana's datasource: user and database only, no TLS (`sslmode: disable`).
async fn connect(app: &TestApp) -> Client {
    let config = format!("host=127.0.0.1 port={} user=grafana dbname=agent_console sslmode=disable", app.pg.port());
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls).await.expect("pg connect");
    tokio::spawn(connection);
    client
}

async fn post_pb(app: &TestApp, path: &str, body: Vec<u8>) {
    let r = app.post(path, "application/x-protobuf", body).await;
    assert_eq!(r.status(), 200, "{path}");
}

/// The captured fixtures plus generated GenAI spans from a few agents, models and sessions.
async fn load(app: &TestApp) {
    post_pb(app, "/v1/traces", fixture("langchain-openinference/traces-1.pb")).await;
    post_pb(app, "/v1/logs", fixture("claude-code/otlp/logs-1.pb")).await;
    post_pb(app, "/v1/logs", fixture("claude-code/otlp/logs-2.pb")).await;
    post_pb(app, "/v1/metrics", fixture("claude-code/otlp/metrics-1.pb")).await;
    for seed in 1..=6 {
        let mut rng = agent_console::fixtures::Rng::new(seed);
        let req = agent_console::fixtures::genai_traces(80, 3, &mut rng, GENERATED_NOW_NS);
        post_pb(app, "/v1/traces", req.encode_to_vec()).await;
    }
    // Cost provenance: Claude Code runs on a subscription (its cost is an estimate, not spend).
    let r = app
        .client
        .put(format!("{}/api/billing/agents/claude-code", app.http))
        .json(&serde_json::json!({"billing": "subscription", "plan": "claude-max"}))
        .send()
        .await
        .expect("mark");
    assert_eq!(r.status(), 200);
}

/// A query found in a dashboard.
#[derive(Debug, Clone)]
struct Target {
    panel: String,
    panel_type: String,
    format: String,
    sql: String,
}

#[derive(Debug, Clone)]
struct VariableDef {
    name: String,
    multi: bool,
    include_all: bool,
    all_value: Option<String>,
    sql: String,
}

struct Dashboard {
    path: PathBuf,
    variables: Vec<VariableDef>,
    targets: Vec<Target>,
}

fn dashboards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards")
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dashboards dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

fn collect_targets(panels: &[Value], ds_uid: &str, out: &mut Vec<Target>) {
    for p in panels {
        let title = p["title"].as_str().unwrap_or_default().to_string();
        if let Some(nested) = p["panels"].as_array() {
            collect_targets(nested, ds_uid, out);
        }
        for t in p["targets"].as_array().into_iter().flatten() {
            let ds = if t["datasource"].is_object() { &t["datasource"] } else { &p["datasource"] };
            assert_eq!(ds["uid"], ds_uid, "{title}: datasource");
            assert_eq!(ds["type"], "grafana-postgresql-datasource", "{title}: datasource type");
            let sql = t["rawSql"].as_str().unwrap_or_else(|| panic!("{title}: target without rawSql")).to_string();
            out.push(Target {
                panel: title.clone(),
                panel_type: p["type"].as_str().unwrap_or_default().to_string(),
                // Grafana's default format is time_series.
                format: t["format"].as_str().unwrap_or("time_series").to_string(),
                sql,
            });
        }
    }
}

fn load_dashboards() -> Vec<Dashboard> {
    let mut files = Vec::new();
    json_files(&dashboards_dir(), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no dashboards");
    files
        .into_iter()
        .map(|path| {
            let d: Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("dashboard json");
            assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()), "{path:?}: uid");
            assert!(d["schemaVersion"].as_i64().is_some_and(|v| v >= 39), "{path:?}: schemaVersion");
            let mut variables = Vec::new();
            for v in d["templating"]["list"].as_array().into_iter().flatten() {
                if v["type"] != "query" {
                    continue;
                }
                assert_eq!(v["datasource"]["uid"], "agent-console-pg", "{path:?}: variable datasource");
                let sql = match &v["query"] {
                    Value::String(s) => s.clone(),
                    q => q["rawSql"].as_str().expect("variable query").to_string(),
                };
                variables.push(VariableDef {
                    name: v["name"].as_str().expect("variable name").to_string(),
                    multi: v["multi"].as_bool().unwrap_or(false),
                    include_all: v["includeAll"].as_bool().unwrap_or(false),
                    all_value: v["allValue"].as_str().filter(|s| !s.is_empty()).map(str::to_string),
                    sql,
                });
            }
            let mut targets = Vec::new();
            collect_targets(d["panels"].as_array().expect("panels"), "agent-console-pg", &mut targets);
            assert!(!targets.is_empty(), "{path:?}: no targets");
            Dashboard { path, variables, targets }
        })
        .collect()
}

/// A Grafana-like `$__interval`: the range over ~100 points, rounded up to a usual step.
fn interval_for(range: TimeRange) -> i64 {
    let target = (range.to_ns - range.from_ns) / 1_000_000 / 100;
    const STEPS: [i64; 12] =
        [1_000, 5_000, 10_000, 15_000, 30_000, 60_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000, 86_400_000];
    STEPS.into_iter().find(|s| *s >= target).unwrap_or(86_400_000)
}

/// How a scenario sets a variable from its options.
#[derive(Debug, Clone, Copy)]
enum Pick {
    All,
    First,
    FirstTwo,
}

fn pick(p: Pick, options: &[String]) -> Current {
    match p {
        Pick::All => Current::All,
        Pick::First => Current::One(options[0].clone()),
        Pick::FirstTwo => Current::Many(options.iter().take(2).cloned().collect()),
    }
}

/// The same selection as plain SQL, written independently of the dashboard.
fn sql_filter(column: &str, current: &Current) -> String {
    let list = |vs: &[String]| vs.iter().map(|v| format!("'{}'", v.replace('\'', "''"))).collect::<Vec<_>>().join(",");
    match current {
        Current::All => "TRUE".into(),
        Current::One(v) => format!("{column} IN ({})", list(std::slice::from_ref(v))),
        Current::Many(vs) => format!("{column} IN ({})", list(vs)),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + b.abs())
}

/// Generic shape checks Grafana itself applies (section 5 of the reference).
fn check_shape(t: &Target, f: &Frame) {
    if t.format == "time_series" {
        let ti = f.col("time");
        assert!(matches!(f.kinds[ti], Kind::Time | Kind::Number), "{}: time column is {:?}", t.panel, f.kinds[ti]);
        for (i, (name, kind)) in f.columns.iter().zip(&f.kinds).enumerate() {
            if i != ti {
                assert!(
                    *kind == Kind::Number || (*kind == Kind::Text && name == "metric"),
                    "{}: column {name} is {kind:?}, not a value",
                    t.panel
                );
            }
        }
        // Long frames must come ordered by time.
        let times: Vec<String> = f.rows.iter().map(|r| r[ti].clone().expect("time")).collect();
        if f.kinds[ti] == Kind::Number {
            let epochs: Vec<f64> = times.iter().map(|v| v.parse().expect("epoch")).collect();
            assert!(epochs.windows(2).all(|w| w[0] <= w[1]), "{}: not ordered by time", t.panel);
            // Seconds, as Grafana's epochPrecisionToMS reads them (a `%e` form ending in e+09).
            assert!(epochs.iter().all(|e| format!("{e:e}").ends_with("e9")), "{}: {epochs:?}", t.panel);
        } else {
            assert!(times.windows(2).all(|w| w[0] <= w[1]), "{}: not ordered by time", t.panel);
        }
        for row in &f.rows {
            for (i, v) in row.iter().enumerate() {
                if f.kinds[i] == Kind::Number {
                    if let Some(v) = v {
                        assert!(v.parse::<f64>().is_ok(), "{}: {v} is not a number", t.panel);
                    }
                }
            }
        }
    }
    // pgx parses timestamps with a space between date and time; a `T` fails the whole query.
    for (i, kind) in f.kinds.iter().enumerate() {
        if *kind == Kind::Time {
            for v in f.rows.iter().filter_map(|r| r[i].as_deref()) {
                let b = v.as_bytes();
                assert!(b.len() >= 10 && b[4] == b'-' && b[7] == b'-', "{}: {v}", t.panel);
                assert!(b.len() == 10 || (b[10] == b' ' && !v.contains('T')), "{}: {v}", t.panel);
            }
        }
    }
    if t.panel_type == "stat" {
        assert_eq!(f.rows.len(), 1, "{}: a stat is one row", t.panel);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_runs() {
    let app = spawn().await;
    load(&app).await;
    let pg = connect(&app).await;
    // pgx pings a pooled connection before use; the answer is an empty query response.
    let ping = pg.simple_query("-- ping").await.expect("ping");
    assert!(ping.iter().all(|m| !matches!(m, SimpleQueryMessage::Row(_))), "{ping:?}");

    // The range comes from the data: the fixtures' timestamps are fixed.
    let bounds = app
        .rows(
            "SELECT epoch_ms(min(time)), epoch_ms(greatest(max(time), (SELECT max(last_seen) FROM sessions))) \
             FROM model_calls",
        )
        .await;
    let (min_ms, max_ms) = (as_i64(&bounds[0][0]), as_i64(&bounds[0][1]));
    // Whole minutes at the start; a fractional second at the end, so `.5Z` literals are exercised.
    let range = TimeRange {
        from_ns: (min_ms / 60_000 * 60_000 - 3_600_000) * 1_000_000,
        to_ns: (max_ms + 60_000) * 1_000_000 + 500_000_000,
    };
    let bounds_sql =
        format!("time BETWEEN '{}' AND '{}'", grafana::rfc3339_nano(range.from_ns), grafana::rfc3339_nano(range.to_ns));
    let interval_ms = interval_for(range);

    let mut checked = BTreeMap::<String, usize>::new();
    let mut ran = 0;
    for dash in load_dashboards() {
        for scenario in [Pick::All, Pick::First, Pick::FirstTwo] {
            let mut ctx = Context::new(range, interval_ms);
            // Variables resolve in order, each seeing the ones before it at their chosen values.
            for def in &dash.variables {
                let sql = ctx.expand(&def.sql).unwrap_or_else(|e| panic!("{:?} ${}: {e:?}", dash.path, def.name));
                let frame =
                    run(&pg, &sql).await.unwrap_or_else(|e| panic!("${} variable query failed: {e}\n{sql}", def.name));
                ran += 1;
                let col = if frame.columns.iter().any(|c| c == "__value") { frame.col("__value") } else { 0 };
                let options: Vec<String> = frame.rows.iter().filter_map(|r| r[col].clone()).collect();
                let needed = if matches!(scenario, Pick::All) { 2 } else { 1 };
                assert!(options.len() >= needed, "${} needs options to test with: {options:?}", def.name);
                ctx.variables.push(Variable {
                    name: def.name.clone(),
                    multi: def.multi,
                    include_all: def.include_all,
                    all_value: def.all_value.clone(),
                    current: pick(scenario, &options),
                    options,
                });
            }
            let current =
                |name: &str| ctx.variables.iter().find(|v| v.name == name).map_or(Current::All, |v| v.current.clone());
            let (agent, model) = (current("agent"), current("model"));
            let calls_where =
                format!("{bounds_sql} AND {} AND {}", sql_filter("agent_id", &agent), sql_filter("model", &model));
            let sessions_where =
                format!("{} AND {}", bounds_sql.replacen("time", "last_seen", 1), sql_filter("agent_id", &agent));
            let total = as_f64(
                &app.scalar(&format!("SELECT coalesce(sum(cost_usd), 0) FROM model_calls WHERE {calls_where}")).await,
            );
            let calls = as_i64(&app.scalar(&format!("SELECT count(*) FROM model_calls WHERE {calls_where}")).await);
            assert!(calls > 0, "{scenario:?}: the selection matches no calls");

            for t in &dash.targets {
                let sql = ctx.expand(&t.sql).unwrap_or_else(|e| panic!("{}: {e:?}", t.panel));
                assert!(!sql.contains('$'), "{}: unexpanded: {sql}", t.panel);
                let f =
                    run(&pg, &sql).await.unwrap_or_else(|e| panic!("{} ({scenario:?}) failed: {e}\n{sql}", t.panel));
                ran += 1;
                check_shape(t, &f);
                let known = match t.panel.as_str() {
                    "Total cost" => {
                        assert_eq!(f.kinds, [Kind::Number]);
                        assert!(close(f.single_number(), total), "{scenario:?} total {} != {total}", f.single_number());
                        true
                    }
                    "Spend vs estimate" => {
                        let e = app
                            .rows(&format!(
                                "SELECT coalesce(sum(spend_usd), 0), \
                                 coalesce(sum(cost_usd) FILTER (WHERE cost_is_estimate), 0) \
                                 FROM model_call_costs WHERE {calls_where}"
                            ))
                            .await;
                        let (spend, estimate) = (f.sum("spend (API)"), f.sum("estimate (subscription, list price)"));
                        assert!(close(spend, as_f64(&e[0][0])) && close(estimate, as_f64(&e[0][1])), "{scenario:?}");
                        assert!(close(spend + estimate, total), "{scenario:?}: {spend} + {estimate} != {total}");
                        if matches!(scenario, Pick::All) {
                            assert!(spend > 0.0 && estimate > 0.0, "both kinds in the data: {spend} {estimate}");
                        }
                        true
                    }
                    "Model calls" => {
                        assert_eq!(f.single_number() as i64, calls, "{scenario:?}");
                        true
                    }
                    "Cost by model" | "Cost by agent" => {
                        assert!(!f.rows.is_empty(), "{}: empty", t.panel);
                        assert!(
                            close(f.sum("cost_usd"), total),
                            "{} {scenario:?}: {} != {total}",
                            t.panel,
                            f.sum("cost_usd")
                        );
                        true
                    }
                    "Tokens by type" => {
                        let e = app
                            .rows(&format!(
                                "SELECT sum(input_tokens - coalesce(cache_read_tokens, 0) - coalesce(cache_write_tokens, 0)), \
                                 sum(cache_read_tokens), sum(cache_write_tokens), sum(output_tokens) \
                                 FROM model_calls WHERE {calls_where}"
                            ))
                            .await;
                        let got = ["input (uncached)", "cache read", "cache write", "output"].map(|c| f.sum(c));
                        let want: Vec<f64> = e[0].iter().map(|v| if v.is_null() { 0.0 } else { as_f64(v) }).collect();
                        assert_eq!(got.to_vec(), want, "{scenario:?}");
                        true
                    }
                    "Model call error rate" => {
                        assert!(f.numbers("error rate").iter().all(|r| (0.0..=1.0).contains(r)), "{:?}", f.rows);
                        assert_eq!(f.sum("calls") as i64, calls);
                        let errors = as_i64(
                            &app.scalar(&format!("SELECT count(*) FROM model_calls WHERE {calls_where} AND error"))
                                .await,
                        );
                        let from_rates: f64 =
                            f.numbers("error rate").iter().zip(f.numbers("calls")).map(|(r, c)| r * c).sum();
                        assert!((from_rates - errors as f64).abs() < 1e-6, "{from_rates} vs {errors}");
                        true
                    }
                    "Active sessions over time" => {
                        assert!(!f.rows.is_empty() && f.numbers("active sessions").iter().all(|n| *n >= 1.0));
                        true
                    }
                    "Top tasks by cost" => {
                        let costs = f.numbers("cost_usd");
                        assert!(costs.windows(2).all(|w| w[0] >= w[1]), "ordered by cost: {costs:?}");
                        let want = as_i64(
                            &app.scalar(&format!(
                                "SELECT count(DISTINCT task_id) FROM model_calls WHERE {calls_where} AND task_id IS NOT NULL"
                            ))
                            .await,
                        );
                        assert_eq!(f.rows.len() as i64, want.min(20));
                        if matches!(agent, Current::All) {
                            assert!(f.texts("task").contains(&"TASK-42".to_string()), "{:?}", f.rows);
                        }
                        true
                    }
                    "Top sessions by cost" => {
                        assert!(!f.rows.is_empty());
                        // Timestamps arrive as timestamptz (checked above for pgx's text format).
                        assert_eq!(f.kinds[f.col("first_call")], Kind::Time);
                        assert_eq!(f.kinds[f.col("cost_usd")], Kind::Number);
                        let top = as_f64(
                            &app.scalar(&format!(
                                "SELECT coalesce(max(c), 0) FROM (SELECT sum(cost_usd) AS c FROM model_calls \
                                 WHERE {calls_where} AND session_id IS NOT NULL GROUP BY session_id)"
                            ))
                            .await,
                        );
                        assert!(close(f.numbers("cost_usd")[0], top), "{:?} vs {top}", f.rows[0]);
                        if matches!((&agent, &model), (Current::All, Current::All)) {
                            let i = f.texts("session_id").iter().position(|s| s == CC_SESSION).expect("claude session");
                            assert!(close(f.numbers("cost_usd")[i], 0.0279));
                        }
                        true
                    }
                    "Unpriced models" => {
                        // Unpriced calls are the ones without a cost, whether or not the cost engine ran.
                        let want = app
                            .rows(&format!(
                                "SELECT coalesce(model, 'unknown'), coalesce(provider, 'unknown'), count(*) FROM model_calls \
                                 WHERE {calls_where} AND cost_usd IS NULL GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"
                            ))
                            .await;
                        let got: Vec<(String, String, i64)> = f
                            .rows
                            .iter()
                            .map(|r| {
                                let s = |i: usize| r[i].clone().unwrap_or_default();
                                (s(0), s(1), s(2).parse().expect("calls"))
                            })
                            .collect();
                        let want: Vec<(String, String, i64)> = want
                            .iter()
                            .map(|r| {
                                (r[0].as_str().unwrap_or("").into(), r[1].as_str().unwrap_or("").into(), as_i64(&r[2]))
                            })
                            .collect();
                        assert_eq!(got, want, "{scenario:?}");
                        true
                    }
                    "Sessions in range" | "Active sessions" | "Active sessions (last 5 min)" => {
                        let extra = if t.panel == "Active sessions (last 5 min)" {
                            // The panel compares with the range end in whole seconds, minus 5 minutes.
                            let since = (range.to_ns.div_euclid(1_000_000_000) - 300) * 1_000_000_000;
                            format!(" AND last_seen > '{}'", grafana::rfc3339_nano(since))
                        } else {
                            String::new()
                        };
                        let want = as_i64(
                            &app.scalar(&format!("SELECT count(*) FROM sessions WHERE {sessions_where}{extra}")).await,
                        );
                        assert!(want > 0, "{}: no sessions to count", t.panel);
                        let got =
                            if t.panel == "Active sessions" { f.rows.len() as i64 } else { f.single_number() as i64 };
                        assert_eq!(got, want.min(100), "{} {scenario:?}", t.panel);
                        true
                    }
                    _ => false,
                };
                if known {
                    *checked.entry(t.panel.clone()).or_default() += 1;
                }
            }
        }
    }
    // The main dashboard's panels all had their values checked, in every scenario.
    let expected = [
        "Total cost",
        "Model calls",
        "Sessions in range",
        "Active sessions (last 5 min)",
        "Cost by model",
        "Cost by agent",
        "Tokens by type",
        "Model call error rate",
        "Top tasks by cost",
        "Top sessions by cost",
        "Unpriced models",
        "Active sessions",
        "Active sessions over time",
        "Spend vs estimate",
    ];
    for title in expected {
        assert_eq!(checked.get(title), Some(&3), "{title} checked in each scenario: {checked:?}");
    }
    assert!(ran >= 3 * (expected.len() + 2), "ran {ran} queries");
    app.shutdown().await;
}

/// The provisioning files point at the datasource uid the dashboards use, and at the wire port.
#[test]
fn provisioning_matches_dashboards() {
    let dir = dashboards_dir().join("provisioning");
    let ds = std::fs::read_to_string(dir.join("datasources/agent-console.yaml")).expect("datasource yaml");
    for needle in [
        "uid: agent-console-pg",
        "type: grafana-postgresql-datasource",
        "url: 127.0.0.1:5433",
        "database: agent_console",
        "sslmode: disable",
        "timescaledb: false",
        "password: ${AGENT_CONSOLE_READ_TOKEN}",
    ] {
        assert!(ds.contains(needle), "datasource provisioning lacks {needle}");
    }
    let dashboards = std::fs::read_to_string(dir.join("dashboards/agent-console.yaml")).expect("dashboards yaml");
    assert!(dashboards.contains("type: file") && dashboards.contains("path:"), "{dashboards}");
    let main: Value =
        serde_json::from_slice(&std::fs::read(dashboards_dir().join("agent-console.json")).expect("read"))
            .expect("json");
    assert_eq!(main["uid"], "agent-console");
    let names: Vec<&str> =
        main["templating"]["list"].as_array().expect("vars").iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(names, ["agent", "model"]);
}
