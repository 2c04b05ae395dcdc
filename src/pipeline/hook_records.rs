//! The `hook_records` stage: a Claude Code hook call sent by `agent-console-hook` carries a record
//! id (`agent_console.hook.record_id` on its log record and tool span). The binary re-sends a call
//! whose answer it did not get (a retry, its spool after the collector was down, a watchdog exit
//! between send and mark-sent), so the same id can be logged twice; the second record's rows are
//! dropped here, before any other stage sees them (its log position is still committed).
//!
//! State: a bounded window of ids, filled at start from the hook records DuckDB holds (the last
//! week) and then by every record the pipeline takes, the replay of uncommitted records included,
//! so it is the same after a restart as before it.

use std::collections::{HashSet, VecDeque};

use agent_console_conventions::{attr, hook};
use duckdb::Connection;

use crate::model::records::Batch;
use crate::store::StoreError;

/// Record ids remembered.
pub const MAX_RECORD_IDS: usize = 200_000;

/// Ids of the hook records already taken, oldest first.
#[derive(Default)]
pub struct HookRecords {
    seen: HashSet<String>,
    order: VecDeque<String>,
}

#[derive(serde::Deserialize)]
struct Attrs {
    #[serde(rename = "agent_console.hook.record_id")]
    record_id: Option<String>,
}

impl HookRecords {
    fn remember(&mut self, id: String) {
        if self.seen.insert(id.clone()) {
            self.order.push_back(id);
        }
        while self.order.len() > MAX_RECORD_IDS {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
    }

    /// Drop the rows of `batch` when it is a hook call already taken (every hook record in it
    /// carries an id seen before); otherwise remember its ids. True when dropped.
    pub fn filter(&mut self, batch: &mut Batch) -> bool {
        let ids: Vec<String> = batch
            .logs
            .iter()
            .filter(|l| l.scope_name.as_deref() == Some(hook::SCOPE) && l.attributes.contains(attr::HOOK_RECORD_ID))
            .filter_map(|l| serde_json::from_str::<Attrs>(&l.attributes).ok()?.record_id)
            .collect();
        if ids.is_empty() {
            return false;
        }
        if ids.iter().all(|id| self.seen.contains(id)) {
            let log_pos = batch.log_pos;
            *batch = Batch { log_pos, ..Batch::default() };
            return true;
        }
        for id in ids {
            self.remember(id);
        }
        false
    }

    /// The ids of the hook records stored since `since_us` (newest `MAX_RECORD_IDS`).
    pub fn load(conn: &Connection, since_us: i64) -> Result<Self, StoreError> {
        let sql = format!(
            "SELECT id FROM (
                 SELECT attributes->>'{key}' AS id, max(time) AS t FROM logs
                 WHERE scope_name = '{scope}' AND time >= make_timestamp(?::BIGINT)
                   AND attributes->>'{key}' IS NOT NULL
                 GROUP BY 1)
             ORDER BY t DESC LIMIT {MAX_RECORD_IDS}",
            key = attr::HOOK_RECORD_ID,
            scope = hook::SCOPE,
        );
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query(duckdb::params![since_us])?;
        let mut newest_first = Vec::new();
        while let Some(r) = rows.next()? {
            newest_first.push(r.get::<_, String>(0)?);
        }
        let mut h = HookRecords::default();
        for id in newest_first.into_iter().rev() {
            h.remember(id);
        }
        Ok(h)
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::records::LogRow;

    fn hook_log(id: Option<&str>) -> LogRow {
        let attributes = match id {
            Some(id) => format!(r#"{{"{}":"{id}","agent_console.hook.event":"PreToolUse"}}"#, attr::HOOK_RECORD_ID),
            None => r#"{"agent_console.hook.event":"PreToolUse"}"#.to_string(),
        };
        LogRow {
            time_us: 1,
            observed_us: 1,
            trace_id: None,
            span_id: None,
            severity_number: 9,
            severity_text: None,
            event_name: Some("PreToolUse".into()),
            body: None,
            scope_name: Some(hook::SCOPE.into()),
            ctx: Default::default(),
            attributes,
            resource_attributes: "{}".into(),
        }
    }

    fn batch(log: LogRow, pos: u64) -> Batch {
        Batch { logs: vec![log], log_pos: pos, ..Batch::default() }
    }

    #[test]
    fn a_repeated_record_id_is_dropped_and_others_kept() {
        let mut h = HookRecords::default();
        let mut first = batch(hook_log(Some("00aa11bb")), 1);
        assert!(!h.filter(&mut first));
        assert_eq!(first.logs.len(), 1);
        let mut again = batch(hook_log(Some("00aa11bb")), 2);
        assert!(h.filter(&mut again), "the re-send is dropped");
        assert!(again.logs.is_empty() && again.log_pos == 2, "rows gone, position kept");
        let mut other = batch(hook_log(Some("00aa11cc")), 3);
        assert!(!h.filter(&mut other));
        let mut no_id = batch(hook_log(None), 4);
        assert!(!h.filter(&mut no_id), "calls without an id (http hooks) are never dropped");
        assert!(!h.filter(&mut batch(hook_log(None), 5)));
        let mut foreign = batch(hook_log(Some("00aa11bb")), 6);
        foreign.logs[0].scope_name = Some("someone-else".into());
        assert!(!h.filter(&mut foreign), "only the hook's own records");
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn ids_load_from_stored_hook_records() {
        let conn = Connection::open_in_memory().expect("db");
        crate::store::schema::migrate(&conn).expect("migrate");
        let row = |t: &str, id: &str, scope: &str| {
            format!(
                "INSERT INTO logs (time, observed_time, severity_number, scope_name, attributes, resource_attributes) \
                 VALUES ('{t}', '{t}', 9, '{scope}', '{{\"{}\": \"{id}\"}}', '{{}}');",
                attr::HOOK_RECORD_ID
            )
        };
        let sql = [
            row("2026-11-21 10:00:00", "0000aaaa", hook::SCOPE),
            row("2026-11-21 11:00:00", "0000bbbb", hook::SCOPE),
            row("2026-11-01 11:00:00", "0000cccc", hook::SCOPE),
            row("2026-11-21 11:00:00", "0000dddd", "other"),
        ]
        .concat();
        conn.execute_batch(&sql).expect("rows");
        // 2026-11-20 00:00:00 UTC
        let h = HookRecords::load(&conn, 1_795_132_800_000_000).expect("load");
        let mut ids: Vec<_> = h.order.iter().cloned().collect();
        ids.sort();
        assert_eq!(ids, vec!["0000aaaa", "0000bbbb"], "recent, hook scope only");
    }

    #[test]
    fn the_window_is_bounded() {
        let mut h = HookRecords::default();
        for i in 0..MAX_RECORD_IDS + 10 {
            h.remember(format!("{i:08x}"));
        }
        assert_eq!(h.len(), MAX_RECORD_IDS);
        assert!(!h.seen.contains("00000000") && h.seen.contains(&format!("{:08x}", MAX_RECORD_IDS + 9)));
    }
}
