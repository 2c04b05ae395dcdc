//! The hourly cost rollup (`cost_hourly`), maintained by the writer: each committed batch's model
//! calls are summed per (hour, agent, task, model, provider) in Rust and upserted in the same
//! transaction, so the rollup always equals `model_calls`. Re-pricing rebuilds it with SQL.

use std::hash::BuildHasher;
use std::sync::Arc;

use crate::model::fastmap::FastMap;

use duckdb::arrow::array::{ArrayRef, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use duckdb::arrow::error::ArrowError;
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;

use super::bulk_insert::BulkInsert;
use super::StoreError;

use crate::model::records::ModelCallRow;

const HOUR_US: i64 = 3_600_000_000;

/// What an insert into `cost_hourly` does with a key it already holds: adds to its sums (a cost
/// stays unknown only while both are). Shared with the fix-ups' rollup moves (`fixups.rs`).
pub const ON_CONFLICT_ADD: &str = "
    ON CONFLICT (hour, agent_id, task_id, model, provider) DO UPDATE SET
        calls = cost_hourly.calls + excluded.calls,
        cost_usd = CASE WHEN cost_hourly.cost_usd IS NULL THEN excluded.cost_usd
                        WHEN excluded.cost_usd IS NULL THEN cost_hourly.cost_usd
                        ELSE cost_hourly.cost_usd + excluded.cost_usd END,
        input_tokens = cost_hourly.input_tokens + excluded.input_tokens,
        output_tokens = cost_hourly.output_tokens + excluded.output_tokens,
        cache_read_tokens = cost_hourly.cache_read_tokens + excluded.cache_read_tokens,
        cache_write_tokens = cost_hourly.cache_write_tokens + excluded.cache_write_tokens";

/// The upsert of one transaction's sums, scanned from an Arrow batch (`bulk_insert.rs`: no staging
/// table to append to, flush and empty, which took ~1.5 of the ~9 ms this costs a transaction).
fn upsert_sql() -> String {
    let function = super::bulk_insert::FUNCTION;
    format!(
        "INSERT INTO cost_hourly (hour, agent_id, task_id, model, provider, calls, cost_usd, input_tokens,
             output_tokens, cache_read_tokens, cache_write_tokens)
         SELECT * FROM {function}() {ON_CONFLICT_ADD}"
    )
}

/// Recompute the whole rollup from `model_calls` (after re-pricing).
pub const REBUILD: &str = "
    DELETE FROM cost_hourly;
    INSERT INTO cost_hourly
    SELECT date_trunc('hour', time), coalesce(agent_id, ''), coalesce(task_id, ''), coalesce(model, ''),
           coalesce(provider, ''), count(*), sum(cost_usd), coalesce(sum(input_tokens), 0),
           coalesce(sum(output_tokens), 0), coalesce(sum(cache_read_tokens), 0), coalesce(sum(cache_write_tokens), 0)
    FROM model_calls GROUP BY ALL;";

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sums {
    pub calls: i64,
    pub cost_usd: Option<f64>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
}

/// (hour, agent, task, hash of (model, provider)): the hash lets a call find its sums without
/// copying its model and provider; the strings are kept once, beside the sums.
type RollupKey = (i64, Arc<str>, Arc<str>, u64);

/// Sums of one transaction (several records), with owned keys; token sums saturate rather than
/// wrap (inputs are range-checked at mapping time, so this is a second fence).
#[derive(Debug, Default)]
pub struct Rollup {
    /// Each key holds the (model, provider, sums) whose pair hashes to it (almost always one).
    sums: FastMap<RollupKey, Vec<(String, String, Sums)>>,
}

impl Sums {
    /// Add `o` (token sums saturate; a cost stays unknown only while both are).
    fn merge(&mut self, o: &Sums) {
        self.calls = self.calls.saturating_add(o.calls);
        if let Some(cost) = o.cost_usd {
            self.cost_usd = Some(self.cost_usd.unwrap_or(0.0) + cost);
        }
        self.input_tokens = self.input_tokens.saturating_add(o.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(o.output_tokens);
        self.cache_read_tokens = self.cache_read_tokens.saturating_add(o.cache_read_tokens);
        self.cache_write_tokens = self.cache_write_tokens.saturating_add(o.cache_write_tokens);
    }
}

impl Rollup {
    /// The sums of `calls` (one batch's, built ahead of the writer on `writer-prep`).
    pub fn of(calls: &[ModelCallRow]) -> Self {
        let mut r = Self::default();
        r.add(calls);
        r
    }

    pub fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }

    /// Add another rollup's sums (a transaction merges its batches'). Each map hashes the
    /// (model, provider) pair with its own seed, so the key is made again here.
    pub fn merge(&mut self, other: &Rollup) {
        for ((hour, agent, task, _), pairs) in &other.sums {
            for (model, provider, s) in pairs {
                let key = (*hour, agent.clone(), task.clone(), self.sums.hasher().hash_one((model, provider)));
                let mine = self.sums.entry(key).or_default();
                match mine.iter_mut().find(|(m, p, _)| m == model && p == provider) {
                    Some((_, _, t)) => t.merge(s),
                    None => mine.push((model.clone(), provider.clone(), s.clone())),
                }
            }
        }
    }

    /// Every (hour, agent, task, model, provider) with its sums, in order (tests).
    #[cfg(test)]
    pub fn sorted(&self) -> Vec<(i64, String, String, String, String, Sums)> {
        let mut out: Vec<_> = self
            .sums
            .iter()
            .flat_map(|((h, a, t, _), pairs)| {
                pairs.iter().map(move |(m, p, s)| (*h, a.to_string(), t.to_string(), m.clone(), p.clone(), s.clone()))
            })
            .collect();
        out.sort_by(|x, y| (x.0, &x.1, &x.2, &x.3, &x.4).cmp(&(y.0, &y.1, &y.2, &y.3, &y.4)));
        out
    }

    pub fn add(&mut self, calls: &[ModelCallRow]) {
        for c in calls {
            let model = c.model.as_deref().unwrap_or_default();
            let provider = c.provider.as_deref().unwrap_or_default();
            let key = (
                c.time_us.div_euclid(HOUR_US) * HOUR_US,
                c.ctx.agent_id.clone().unwrap_or_default(),
                c.ctx.task_id.clone().unwrap_or_default(),
                self.sums.hasher().hash_one((model, provider)),
            );
            let pairs = self.sums.entry(key).or_default();
            let i = match pairs.iter().position(|(m, p, _)| m == model && p == provider) {
                Some(i) => i,
                None => {
                    pairs.push((model.to_string(), provider.to_string(), Sums::default()));
                    pairs.len() - 1
                }
            };
            let s = &mut pairs[i].2;
            s.calls = s.calls.saturating_add(1);
            if let Some(cost) = c.cost_usd.filter(|c| c.is_finite()) {
                s.cost_usd = Some(s.cost_usd.unwrap_or(0.0) + cost);
            }
            s.input_tokens = s.input_tokens.saturating_add(c.input_tokens.unwrap_or(0));
            s.output_tokens = s.output_tokens.saturating_add(c.output_tokens.unwrap_or(0));
            s.cache_read_tokens = s.cache_read_tokens.saturating_add(c.cache_read_tokens.unwrap_or(0));
            s.cache_write_tokens = s.cache_write_tokens.saturating_add(c.cache_write_tokens.unwrap_or(0));
        }
    }

    /// Upsert the sums into `cost_hourly` (inside the writer's transaction).
    pub fn apply(&self, conn: &Connection, bulk: &BulkInsert) -> Result<(), StoreError> {
        if self.sums.is_empty() {
            return Ok(());
        }
        bulk.run(conn, &upsert_sql(), vec![self.to_arrow()?])?;
        Ok(())
    }

    /// The sums as one Arrow batch with `cost_hourly`'s column names.
    fn to_arrow(&self) -> Result<RecordBatch, ArrowError> {
        let n = self.sums.values().map(Vec::len).sum::<usize>();
        let mut hour = TimestampMicrosecondBuilder::with_capacity(n);
        let (mut agent, mut task, mut model, mut provider) =
            (StringBuilder::new(), StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
        let mut cost = Float64Builder::with_capacity(n);
        let mut ints: [Int64Builder; 5] = std::array::from_fn(|_| Int64Builder::with_capacity(n));
        for ((h, a, t, _), pairs) in &self.sums {
            for (m, p, s) in pairs {
                hour.append_value(*h);
                agent.append_value(a);
                task.append_value(t);
                model.append_value(m);
                provider.append_value(p);
                cost.append_option(s.cost_usd);
                for (b, v) in ints.iter_mut().zip([
                    s.calls,
                    s.input_tokens,
                    s.output_tokens,
                    s.cache_read_tokens,
                    s.cache_write_tokens,
                ]) {
                    b.append_value(v);
                }
            }
        }
        let [mut calls, mut input, mut output, mut cache_read, mut cache_write] = ints;
        let cols: Vec<(&str, ArrayRef)> = vec![
            ("hour", Arc::new(hour.finish())),
            ("agent_id", Arc::new(agent.finish())),
            ("task_id", Arc::new(task.finish())),
            ("model", Arc::new(model.finish())),
            ("provider", Arc::new(provider.finish())),
            ("calls", Arc::new(calls.finish())),
            ("cost_usd", Arc::new(cost.finish())),
            ("input_tokens", Arc::new(input.finish())),
            ("output_tokens", Arc::new(output.finish())),
            ("cache_read_tokens", Arc::new(cache_read.finish())),
            ("cache_write_tokens", Arc::new(cache_write.finish())),
        ];
        RecordBatch::try_from_iter(cols)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::records::Context;

    fn call(time_us: i64, agent: &str, model: Option<&str>, cost: Option<f64>, input: i64) -> ModelCallRow {
        ModelCallRow {
            time_us,
            source: "span",
            trace_id: None,
            span_id: None,
            parent_span_id: None,
            request_id: None,
            model: model.map(str::to_string),
            provider: Some("anthropic".into()),
            operation: Some("chat".into()),
            input_tokens: Some(input),
            output_tokens: Some(7),
            cache_read_tokens: None,
            cache_write_tokens: Some(2),
            cost_usd: cost,
            cost_source: cost.map(|_| "reported"),
            duration_ms: None,
            error: false,
            token_rule: "otel",
            ctx: Context { agent_id: Some(agent.into()), task_id: Some("T-1".into()), ..Context::default() },
        }
    }

    /// Per-batch rollups (each map with its own hash seed) merged equal one rollup of all the
    /// calls: the same keys, none twice (the upsert refuses a key twice in one statement).
    #[test]
    fn merged_batch_sums_equal_the_sums_of_all_calls() {
        let h = 1_764_000_000_000_000 / HOUR_US * HOUR_US;
        let calls: Vec<_> = (0..40i64)
            .map(|i| {
                let agent = if i % 3 == 0 { "a" } else { "b" };
                let model = if i % 5 == 0 { None } else { Some("m") };
                let cost = if i % 4 == 0 { None } else { Some(0.25) };
                call(h + i * 100_000_000, agent, model, cost, i)
            })
            .collect();
        let whole = Rollup::of(&calls);
        let mut merged = Rollup::default();
        for chunk in calls.chunks(7) {
            merged.merge(&Rollup::of(chunk));
        }
        let pairs = |r: &Rollup| r.sums.values().map(Vec::len).sum::<usize>();
        assert_eq!(merged.sorted(), whole.sorted());
        assert_eq!(pairs(&merged), pairs(&whole));
        // First hour: 2 agents x (a model, none); the second (4 calls): 2 agents x the model.
        assert_eq!(whole.sorted().len(), 6, "{:?}", whole.sorted());
        assert_eq!(merged.sorted().iter().map(|r| r.5.calls).sum::<i64>(), 40);
    }

    /// Sums upserted in two transactions whose keys overlap (a known cost plus an unknown one, an
    /// hour boundary, a call without a model) equal the rollup rebuilt from the stored calls.
    #[test]
    fn upserted_sums_equal_the_rebuilt_rollup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = Connection::open_in_memory().expect("db");
        conn.execute_batch(&format!("ATTACH '{}' AS db; USE db;", dir.path().join("db.duckdb").display()))
            .expect("attach");
        crate::store::schema::migrate(&conn).expect("migrate");
        let bulk = BulkInsert::register(&conn).expect("register");
        let h = 1_764_000_000_000_000 / HOUR_US * HOUR_US;
        let txns = [
            vec![call(h + 5, "a", Some("m"), Some(0.5), 100), call(h + 9, "a", Some("m"), None, 10)],
            vec![
                call(h + 60, "a", Some("m"), Some(0.25), 1),
                call(h + HOUR_US, "a", Some("m"), Some(1.0), 3),
                call(h + 70, "b", None, None, 4),
            ],
        ];
        for calls in &txns {
            conn.execute_batch("BEGIN").expect("begin");
            let mut r = Rollup::default();
            r.add(calls);
            r.apply(&conn, &bulk).expect("apply");
            conn.execute_batch("COMMIT").expect("commit");
        }
        let rows = |sql: &str| -> Vec<String> {
            let mut st = conn.prepare(sql).expect("prepare");
            st.query_map([], |r| {
                Ok(format!(
                    "{}|{}|{}|{}|{}|{:?}|{}|{}|{}|{}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<f64>>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, i64>(8)?,
                    r.get::<_, i64>(9)?
                ))
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
        };
        let q = "SELECT CAST(hour AS VARCHAR), agent_id, task_id, model, calls, cost_usd, input_tokens,
                        output_tokens, cache_read_tokens, cache_write_tokens FROM cost_hourly ORDER BY ALL";
        let upserted = rows(q);
        assert_eq!(upserted.len(), 3, "{upserted:?}");
        assert!(upserted.iter().any(|r| r.ends_with("|a|T-1|m|3|Some(0.75)|111|21|0|6")), "{upserted:?}");
        assert!(upserted.iter().any(|r| r.contains("|b|T-1||1|None|4|7|0|2")), "{upserted:?}");

        // The same calls stored and the rollup rebuilt from them.
        for c in txns.iter().flatten() {
            conn.execute(
                "INSERT INTO model_calls (time, source, model, provider, input_tokens, output_tokens,
                     cache_read_tokens, cache_write_tokens, cost_usd, agent_id, task_id)
                 VALUES (make_timestamp(?), 'span', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                duckdb::params![
                    c.time_us,
                    c.model,
                    c.provider,
                    c.input_tokens,
                    c.output_tokens,
                    c.cache_read_tokens,
                    c.cache_write_tokens,
                    c.cost_usd,
                    c.ctx.agent_id.as_deref(),
                    c.ctx.task_id.as_deref()
                ],
            )
            .expect("insert call");
        }
        conn.execute_batch(REBUILD).expect("rebuild");
        assert_eq!(rows(q), upserted);
    }
}
