//! The hourly cost rollup (`cost_hourly`), maintained by the writer: each committed batch's model
//! calls are summed per (hour, agent, task, model, provider) in Rust and upserted in the same
//! transaction, so the rollup always equals `model_calls`. Re-pricing rebuilds it with SQL.

use std::hash::BuildHasher;
use std::sync::Arc;

use crate::model::fastmap::FastMap;

use duckdb::{params, Appender, Connection};

use crate::model::records::ModelCallRow;

const HOUR_US: i64 = 3_600_000_000;

pub const STAGE_DDL: &str = "
    CREATE TEMP TABLE IF NOT EXISTS cost_hourly_stage (hour_us BIGINT, agent_id VARCHAR, task_id VARCHAR,
        model VARCHAR, provider VARCHAR, calls BIGINT, cost_usd DOUBLE, input_tokens BIGINT, output_tokens BIGINT,
        cache_read_tokens BIGINT, cache_write_tokens BIGINT);";

const UPSERT: &str = "
    INSERT INTO cost_hourly
    SELECT make_timestamp(hour_us), agent_id, task_id, model, provider, calls, cost_usd, input_tokens,
           output_tokens, cache_read_tokens, cache_write_tokens
    FROM cost_hourly_stage
    ON CONFLICT (hour, agent_id, task_id, model, provider) DO UPDATE SET
        calls = cost_hourly.calls + excluded.calls,
        cost_usd = CASE WHEN cost_hourly.cost_usd IS NULL THEN excluded.cost_usd
                        WHEN excluded.cost_usd IS NULL THEN cost_hourly.cost_usd
                        ELSE cost_hourly.cost_usd + excluded.cost_usd END,
        input_tokens = cost_hourly.input_tokens + excluded.input_tokens,
        output_tokens = cost_hourly.output_tokens + excluded.output_tokens,
        cache_read_tokens = cost_hourly.cache_read_tokens + excluded.cache_read_tokens,
        cache_write_tokens = cost_hourly.cache_write_tokens + excluded.cache_write_tokens;
    DELETE FROM cost_hourly_stage;";

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

impl Rollup {
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
    pub fn apply(&self, conn: &Connection, stage: &mut Appender<'_>) -> Result<(), duckdb::Error> {
        if self.sums.is_empty() {
            return Ok(());
        }
        for ((hour, agent, task, _), pairs) in &self.sums {
            for (model, provider, s) in pairs {
                stage.append_row(params![
                    hour,
                    agent,
                    task,
                    model,
                    provider,
                    s.calls,
                    s.cost_usd,
                    s.input_tokens,
                    s.output_tokens,
                    s.cache_read_tokens,
                    s.cache_write_tokens
                ])?;
            }
        }
        stage.flush()?;
        conn.execute_batch(UPSERT)
    }
}
