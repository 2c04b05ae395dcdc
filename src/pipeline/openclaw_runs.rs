//! The OpenClaw part of the `dedup` stage survives a restart: a shim run counted once stays
//! counted once after the collector restarts (issue 10, row 16). The shim re-sends a run when its
//! own state file is lost or corrupt (it restarts its ledger empty and re-emits each session's
//! latest run); before this the run-id memory was in the pipeline only, so such a re-send after a
//! collector restart was counted twice.
//!
//! The ledger is the stored rows themselves: a shim run is one `model_calls` row with
//! `operation = 'openclaw.run'` and its `run_id`, and a shim model call (or usage reconcile) one
//! row with `token_rule = 'openclaw_shim'` and its message id as `request_id`, written by the one writer in the transaction
//! that stores its record (and that transaction also records the log position, so what is not
//! committed yet is replayed from the ingest log through this same stage). At start the run ids of
//! the last week (newest first, bounded) and the time of the last shim record are read back and
//! seeded into `model::openclaw::RunDedup`. No second table to keep in step with the first.

use agent_console_conventions::openclaw as oc;
use duckdb::Connection;

use crate::store::StoreError;

/// Run ids read back at start (the in-memory window holds at most this many anyway).
pub const MAX_RUN_IDS: usize = 50_000;

/// What the OpenClaw dedup remembers across a restart.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OpenclawRuns {
    /// Shim run ids already counted, oldest first.
    pub runs: Vec<String>,
    /// Time of the newest shim record stored (the shim is reporting), in µs.
    pub shim_last_us: Option<i64>,
    /// Usage the shim's rows stored per session (all time: `sessions.usage` is cumulative), for
    /// the most recently active sessions, oldest first.
    pub totals: Vec<(String, crate::model::openclaw::SessionTotals)>,
}

impl OpenclawRuns {
    /// The shim runs stored since `since_us` and the newest shim record.
    pub fn load(conn: &Connection, since_us: i64) -> Result<Self, StoreError> {
        let sql = format!(
            "SELECT k FROM (
                 SELECT k, max(time) AS t FROM (
                     SELECT run_id AS k, time FROM model_calls
                     WHERE operation = '{op}' AND source = 'log' AND run_id IS NOT NULL
                       AND time >= make_timestamp(?::BIGINT)
                     UNION ALL
                     SELECT 'msg:' || request_id AS k, time FROM model_calls
                     WHERE token_rule = '{rule}' AND source = 'log' AND request_id IS NOT NULL
                       AND time >= make_timestamp(?::BIGINT))
                 GROUP BY 1)
             ORDER BY t DESC LIMIT {MAX_RUN_IDS}",
            op = oc::RUN_OPERATION,
            rule = crate::model::openclaw::SHIM_RULE,
        );
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query(duckdb::params![since_us, since_us])?;
        let mut newest_first = Vec::new();
        while let Some(r) = rows.next()? {
            newest_first.push(r.get::<_, String>(0)?);
        }
        newest_first.reverse();
        let sql = format!(
            "SELECT epoch_us(max(time)) FROM logs
             WHERE scope_name = '{scope}' AND event_name IN ('{status}', '{run}')
               AND time >= make_timestamp(?::BIGINT)",
            scope = oc::SCOPE,
            status = oc::STATUS_EVENT,
            run = oc::RUN_EVENT,
        );
        let shim_last_us: Option<i64> = conn.query_row(&sql, duckdb::params![since_us], |r| r.get(0))?;
        let sql = format!(
            "SELECT session_id, coalesce(sum(input_tokens), 0)::BIGINT, coalesce(sum(output_tokens), 0)::BIGINT,
                    coalesce(sum(cache_read_tokens), 0)::BIGINT, coalesce(sum(cache_write_tokens), 0)::BIGINT,
                    coalesce(sum(cost_usd), 0)::DOUBLE
             FROM model_calls WHERE token_rule = '{rule}' AND session_id IS NOT NULL
             GROUP BY session_id ORDER BY max(time) DESC LIMIT {MAX_RUN_IDS}",
            rule = crate::model::openclaw::SHIM_RULE,
        );
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        let mut totals = Vec::new();
        while let Some(r) = rows.next()? {
            totals.push((
                r.get::<_, String>(0)?,
                crate::model::openclaw::SessionTotals {
                    input: r.get(1)?,
                    output: r.get(2)?,
                    cache_read: r.get(3)?,
                    cache_write: r.get(4)?,
                    cost: r.get(5)?,
                },
            ));
        }
        totals.reverse();
        Ok(Self { runs: newest_first, shim_last_us, totals })
    }
}
