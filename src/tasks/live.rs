//! The live `task` message: a task's card (state, flags, cost) when one of them changed,
//! coalesced to at most one message per task per second. A commit hook (pipeline thread, never
//! blocks) notes which sessions and tasks a batch touched into a bounded set; a tokio task wakes
//! once a second, waits until those rows are committed (`Store::flush`), reads the touched
//! tasks' cards on a reader connection and publishes the ones whose state, flags or cost moved.
//! Hand edits through the API mark their task too (`TaskWatch::touch`).
//!
//! The cards' query sums every stored model call of the touched tasks, so it grows with the
//! store. It runs only while someone is subscribed (with nobody listening the touched set keeps
//! growing, up to `MAX_DIRTY` sessions and tasks, and goes out with the first tick that has a
//! listener, so a client that reconnects misses no change within that bound; a read that fails
//! drops its set, as before), and it takes at most a tenth of the time: after a read that took
//! `t`, the next starts no sooner than `10 t` later.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::live::{Draft, Hub};
use crate::model::records::Batch;
use crate::store::writer::CommitHook;
use crate::store::Store;

/// Live message type.
pub const TASK: &str = "task";

/// Most sessions / tasks remembered between two ticks (beyond it, the rest wait for the next change).
const MAX_DIRTY: usize = 10_000;

/// After a read that took `t`, the next starts no sooner than `READ_SHARE * t` later.
const READ_SHARE: u32 = 10;

/// The pause after a read that took `spent`, so that the next read starts no sooner than
/// `READ_SHARE * spent` after this one started (the ticks, `period` apart, come on top of it;
/// none when the ticks alone keep the share).
fn pause_after(spent: Duration, period: Duration) -> Duration {
    if spent.saturating_mul(READ_SHARE) <= period {
        return Duration::ZERO;
    }
    spent.saturating_mul(READ_SHARE - 1)
}

#[derive(Default)]
struct Dirty {
    sessions: HashSet<String>,
    tasks: HashSet<String>,
}

/// Shared between the commit hook, the API and the ticking task.
#[derive(Clone, Default)]
pub struct TaskWatch {
    dirty: Arc<Mutex<Dirty>>,
}

impl TaskWatch {
    /// The commit hook: note what the batch touched (cheap, bounded).
    pub fn hook(&self) -> CommitHook {
        let w = self.clone();
        Box::new(move |b: Arc<Batch>| w.note(&b))
    }

    fn note(&self, b: &Batch) {
        if b.session_updates.is_empty() && b.task_links.is_empty() && b.model_calls.is_empty() {
            return;
        }
        let mut d = self.dirty.lock().unwrap_or_else(|p| p.into_inner());
        for u in &b.session_updates {
            if d.sessions.len() < MAX_DIRTY {
                d.sessions.insert(u.session_id.clone());
            }
        }
        for c in &b.model_calls {
            if let Some(s) = c.ctx.session_id.as_deref() {
                if d.sessions.len() < MAX_DIRTY && !d.sessions.contains(s) {
                    d.sessions.insert(s.to_string());
                }
            }
            if let Some(t) = c.ctx.task_id.as_deref() {
                if d.tasks.len() < MAX_DIRTY && !d.tasks.contains(t) {
                    d.tasks.insert(t.to_string());
                }
            }
        }
        for l in &b.task_links {
            if d.tasks.len() < MAX_DIRTY {
                d.tasks.insert(l.task_id.clone());
            }
        }
    }

    /// A hand change of a task.
    pub fn touch(&self, task: &str) {
        let mut d = self.dirty.lock().unwrap_or_else(|p| p.into_inner());
        if d.tasks.len() < MAX_DIRTY {
            d.tasks.insert(task.to_string());
        }
    }

    fn take(&self) -> Dirty {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Run the once-a-second publisher until `cancel`.
    pub fn start(&self, store: Store, hub: Arc<Hub>, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let w = self.clone();
        tokio::spawn(async move {
            let period = Duration::from_secs(1);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // What was last published per task (state, flags, cost in micro-dollars).
            let mut last: HashMap<String, (Value, Value, i64)> = HashMap::new();
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if hub.subscribers() == 0 {
                    continue;
                }
                let d = w.take();
                if d.sessions.is_empty() && d.tasks.is_empty() {
                    continue;
                }
                let spent = match w.publish(&store, &hub, d, &mut last).await {
                    Ok(spent) => spent,
                    Err(e) => {
                        tracing::debug!(error = %e, "task messages skipped this second");
                        Duration::ZERO
                    }
                };
                if last.len() > 100_000 {
                    last.clear();
                }
                // At most a tenth of the time in the cards' query (it scans the tasks' calls).
                let rest = pause_after(spent, period);
                if !rest.is_zero() {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(rest) => {}
                    }
                }
            }
        })
    }

    /// Publish the touched tasks' cards that moved; returns the time the reads took (not the
    /// wait for the commit before them).
    async fn publish(
        &self,
        store: &Store,
        hub: &Hub,
        d: Dirty,
        last: &mut HashMap<String, (Value, Value, i64)>,
    ) -> Result<Duration, crate::store::StoreError> {
        // The touched rows are committed before their cards are read.
        store.flush(Some(Duration::from_secs(5))).await?;
        let started = std::time::Instant::now();
        let sessions: Vec<String> = d.sessions.into_iter().collect();
        let mut tasks: Vec<String> = d.tasks.into_iter().collect();
        if !sessions.is_empty() {
            let json = serde_json::to_string(&sessions).unwrap_or_else(|_| "[]".into());
            let rows = store
                .reader
                .query_objects(
                    "SELECT DISTINCT task_id FROM session_tasks
                     WHERE list_contains(from_json($1::VARCHAR, '[\"VARCHAR\"]'), session_id)",
                    vec![Some(json)],
                )
                .await?;
            tasks.extend(rows.iter().filter_map(|r| r.get("task_id").and_then(Value::as_str).map(str::to_string)));
        }
        tasks.sort();
        tasks.dedup();
        if tasks.is_empty() {
            return Ok(started.elapsed());
        }
        let json = serde_json::to_string(&tasks).unwrap_or_else(|_| "[]".into());
        let sql = format!(
            "SELECT * FROM ({}) WHERE list_contains(from_json($11::VARCHAR, '[\"VARCHAR\"]'), task_id)",
            super::store::CARDS_SQL
        );
        let now = crate::api::sessions::now_us().to_string();
        let params = vec![
            Some(now),
            None,
            None,
            None,
            None,
            None,
            Some("1".into()),
            None,
            None,
            Some("1000000".into()),
            Some(json),
        ];
        let rows = store.reader.query_objects(sql, params).await?;
        for mut r in rows {
            r.remove("_cursor_us");
            let Some(id) = r.get("task_id").and_then(Value::as_str).map(str::to_string) else { continue };
            let state = r.get("state").cloned().unwrap_or(Value::Null);
            let flags = r.get("flags").cloned().unwrap_or(Value::Null);
            let micros = (r.get("cost_usd").and_then(Value::as_f64).unwrap_or(0.0) * 1e6).round() as i64;
            let key = (state, flags, micros);
            if last.get(&id) == Some(&key) {
                continue;
            }
            last.insert(id.clone(), key);
            let agent = r.get("agent_id").and_then(Value::as_str).map(str::to_string);
            hub.publish(Draft {
                kind: TASK,
                session_id: None,
                agent_id: agent.map(Arc::from),
                task_id: Some(id.into()),
                data: Value::Object(r).to_string().into(),
            });
        }
        Ok(started.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_take_at_most_a_tenth_of_the_time() {
        let ms = Duration::from_millis;
        let second = Duration::from_secs(1);
        // Quick reads: the once-a-second tick alone keeps the share.
        assert_eq!(pause_after(ms(20), second), Duration::ZERO);
        assert_eq!(pause_after(ms(100), second), Duration::ZERO);
        // A read of t: the next starts >= 10 t after this one started (t + 9 t).
        for t in [ms(150), ms(400), ms(1_000), ms(5_000)] {
            let next_start = t + pause_after(t, second);
            assert_eq!(next_start, t * READ_SHARE, "{t:?}");
        }
    }
}
