//! The `imports` stage (before `dedup`): a history import (`crate::import`) repeats what the
//! store may already hold: an earlier import of the same transcripts, or the same model calls,
//! tool calls and prompts reported live by Claude Code's telemetry and the hooks. Both paths
//! carry the same keys: a model call's `request_id` (the live `api_request` event's, the
//! transcript's `requestId`), a tool call's `tool_use_id`, a prompt's `prompt.id`.
//!
//! Every Claude Code model call, tool call and prompt the pipeline takes is remembered (a bounded
//! window, filled at start from what DuckDB holds, like `hook_records`); an imported record's
//! rows whose key is remembered are dropped. A live `api_request` whose request id an import
//! already counted is dropped too (import first, telemetry later). Imported rows that stay are
//! marked `source = 'transcript'` after `dedup` (`mark`).

use std::collections::VecDeque;

use duckdb::Connection;

use crate::import::claude_code::SCOPE;
use crate::model::fastmap::{FastSet, Fingerprint};
use crate::model::records::Batch;
use crate::store::StoreError;

/// Keys remembered.
pub const MAX_KEYS: usize = 500_000;
/// What an imported row's `source` says.
pub const TRANSCRIPT: &str = "transcript";

/// The window holds keys as 128-bit fingerprints of (kind, id), not as text: 16 bytes each
/// twice (set and order) instead of two copies of a string, ~20 MB at the bound rather than
/// ~65 MB (BENCHMARKS.md, "memory outside DuckDB's cache"), and no string built per key.
#[derive(Default)]
pub struct Imports {
    seen: FastSet<u128>,
    order: VecDeque<u128>,
    fp: Fingerprint,
}

fn claude(service: Option<&str>) -> bool {
    service.is_some_and(|s| s.starts_with("claude-code"))
}

/// Is this record an import (every log row in it has the import scope)?
pub fn is_import(batch: &Batch) -> bool {
    !batch.logs.is_empty() && batch.logs.iter().all(|l| l.scope_name.as_deref() == Some(SCOPE))
}

const PROMPT_EVENTS: &[&str] = &["claude_code.user_prompt", "UserPromptSubmit"];

#[derive(serde::Deserialize)]
struct KeyAttr {
    #[serde(rename = "agent_console.import.key")]
    key: Option<String>,
}

/// The stage key of an imported event (`call:X` -> (`c`, X), `tool:X` -> (`t`, X), `prompt:X`
/// -> (`p`, X)).
fn import_key(attributes: &str) -> Option<(&'static str, String)> {
    let k = serde_json::from_str::<KeyAttr>(attributes).ok()?.key?;
    let (kind, id) = k.split_once(':')?;
    let short = match kind {
        "call" => "c",
        "tool" => "t",
        "prompt" => "p",
        "end" => "e",
        _ => return None,
    };
    Some((short, id.to_string()))
}

impl Imports {
    /// The window's key of a call (`c`), tool call (`t`), prompt (`p`) or import end (`e`) id.
    fn key(&self, kind: &str, id: &str) -> u128 {
        self.fp.pair(kind.as_bytes(), id.as_bytes())
    }

    fn remember(&mut self, k: u128) {
        if self.seen.insert(k) {
            self.order.push_back(k);
        }
        while self.order.len() > MAX_KEYS {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
    }

    /// Drop the rows of `batch` already counted; remember the rest. Returns rows dropped.
    pub fn filter(&mut self, batch: &mut Batch) -> usize {
        let import = is_import(batch);
        let mut dropped = 0;
        // Keys first seen in this batch: an imported event's log row stays with its call.
        let mut fresh: FastSet<u128> = FastSet::default();
        let mut keep = Vec::with_capacity(batch.model_calls.len());
        for c in std::mem::take(&mut batch.model_calls) {
            let key = (c.source == "log" && claude(c.ctx.service_name.as_deref()))
                .then(|| c.request_id.as_deref().map(|r| self.key("c", r)))
                .flatten();
            match key {
                Some(k) if self.seen.contains(&k) => dropped += 1,
                Some(k) => {
                    fresh.insert(k);
                    self.remember(k);
                    keep.push(c);
                }
                None => keep.push(c),
            }
        }
        batch.model_calls = keep;
        let mut keep = Vec::with_capacity(batch.tool_calls.len());
        for t in std::mem::take(&mut batch.tool_calls) {
            let key = claude(t.ctx.service_name.as_deref())
                .then(|| t.tool_call_id.as_deref().map(|id| self.key("t", id)))
                .flatten();
            match key {
                Some(k) if import && self.seen.contains(&k) => dropped += 1,
                Some(k) => {
                    fresh.insert(k);
                    self.remember(k);
                    keep.push(t);
                }
                None => keep.push(t),
            }
        }
        batch.tool_calls = keep;
        let mut keep = Vec::with_capacity(batch.logs.len());
        for l in std::mem::take(&mut batch.logs) {
            let key = if import {
                import_key(&l.attributes).map(|(kind, id)| self.key(kind, &id))
            } else {
                (claude(l.ctx.service_name.as_deref())
                    && l.event_name.as_deref().is_some_and(|e| PROMPT_EVENTS.contains(&e)))
                .then(|| l.ctx.run_id.as_deref().map(|p| self.key("p", p)))
                .flatten()
            };
            match key {
                Some(k) if import && self.seen.contains(&k) && !fresh.contains(&k) => {}
                Some(k) => {
                    self.remember(k);
                    keep.push(l);
                }
                None => keep.push(l),
            }
        }
        batch.logs = keep;
        dropped
    }

    /// After `dedup`: an imported record's calls say where they came from.
    pub fn mark(batch: &mut Batch, import: bool) {
        if !import {
            return;
        }
        for c in &mut batch.model_calls {
            c.source = TRANSCRIPT;
        }
        for t in &mut batch.tool_calls {
            t.source = TRANSCRIPT;
        }
    }

    /// The keys of the Claude Code calls, tool calls and prompts DuckDB holds (newest first).
    pub fn load(conn: &Connection) -> Result<Self, StoreError> {
        let sql = format!(
            "SELECT kind, id FROM (
                 SELECT 'c' AS kind, request_id AS id, time FROM model_calls
                 WHERE service_name LIKE 'claude-code%' AND source IN ('log', '{TRANSCRIPT}') AND request_id IS NOT NULL
                 UNION ALL
                 SELECT 't', tool_call_id, time FROM tool_calls
                 WHERE service_name LIKE 'claude-code%' AND tool_call_id IS NOT NULL
                 UNION ALL
                 SELECT 'p', run_id, time FROM logs
                 WHERE service_name LIKE 'claude-code%' AND run_id IS NOT NULL
                   AND event_name IN ('claude_code.user_prompt', 'UserPromptSubmit'))
             ORDER BY time DESC LIMIT {MAX_KEYS}"
        );
        let mut stmt = conn.prepare(&sql)?;
        let mut out = Imports::default();
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut keys: Vec<u128> = Vec::new();
        for row in rows {
            let (kind, id) = row?;
            keys.push(out.key(&kind, &id));
        }
        keys.reverse();
        for k in keys {
            out.remember(k);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::claude_code::{to_otlp, FileReader};
    use crate::model::normalize;

    const LINES: &[&str] = &[
        r#"{"promptId":"p1","type":"user","message":{"role":"user","content":"Run it"},"uuid":"u1","timestamp":"2026-12-03T09:33:10.576Z","sessionId":"s1"}"#,
        r#"{"requestId":"req_1","type":"assistant","uuid":"u2","timestamp":"2026-12-03T09:33:10.635Z","sessionId":"s1","promptId":"p1","message":{"id":"msg_1","model":"claude-opus-4-8","content":[{"type":"tool_use","id":"toolu_1","name":"Bash","input":{}}],"usage":{"input_tokens":10,"output_tokens":2}}}"#,
        r#"{"promptId":"p1","type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_1","type":"tool_result","content":"ok"}]},"uuid":"u3","timestamp":"2026-12-03T09:33:10.745Z","sessionId":"s1"}"#,
    ];

    /// The rows of the transcript lines as an import record (`live`: as Claude Code's own scope).
    fn batch(live: bool) -> Batch {
        let mut r = FileReader::new(None);
        let mut items = Vec::new();
        for l in LINES {
            r.line(l, &mut items);
        }
        r.finish(&mut items);
        let mut req = to_otlp(&items);
        if live {
            for rl in &mut req.resource_logs {
                for sl in &mut rl.scope_logs {
                    sl.scope.as_mut().expect("scope").name = "com.anthropic.claude_code.events".into();
                }
            }
        }
        normalize::logs(&req, 0).batch
    }

    /// (model calls, tool calls, logs) left.
    fn left(b: &Batch) -> (usize, usize, usize) {
        (b.model_calls.len(), b.tool_calls.len(), b.logs.len())
    }

    #[test]
    fn table() {
        // (records in order: true = live, what each leaves)
        type Case = (&'static [bool], &'static [(usize, usize, usize)]);
        let cases: &[Case] = &[
            // import twice: the second counts nothing
            (&[false, false], &[(1, 1, 4), (0, 0, 0)]),
            // live first, then the import: nothing of it stays but where it ends
            (&[true, false], &[(1, 1, 4), (0, 0, 1)]),
            // import first, then live telemetry: the live call is not counted again
            (&[false, true], &[(1, 1, 4), (0, 1, 4)]),
        ];
        for (records, want) in cases {
            let mut stage = Imports::default();
            for (live, want) in records.iter().zip(want.iter()) {
                let mut b = batch(*live);
                assert_eq!(is_import(&b), !live);
                stage.filter(&mut b);
                assert_eq!(left(&b), *want, "{records:?}");
            }
        }
    }

    #[test]
    fn mark_says_transcript() {
        let mut b = batch(false);
        Imports::mark(&mut b, true);
        assert!(b.model_calls.iter().all(|c| c.source == TRANSCRIPT));
        assert!(b.tool_calls.iter().all(|c| c.source == TRANSCRIPT));
    }
}
