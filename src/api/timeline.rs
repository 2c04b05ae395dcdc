//! `GET /api/sessions/{id}/timeline?limit=&cursor=&types=`: a session's story, oldest first:
//! prompts, model calls, tool calls (with inputs and outputs where sent), errors, other events
//! (only when asked for in `types`), state transitions and control steps (the audit trail of
//! commands and approvals: `command`), in one stable total order
//! (time, type rank, row key), so paging with the cursor never skips or repeats an item, even
//! while the session is still receiving rows. Large text is cut to `TEXT_LIMIT` bytes and the item
//! is flagged `truncated`.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::params::{comma_list, decode_cursor, encode_cursor, page_limit};
use super::sessions::{exists, refused};
use super::{ApiError, ApiState};
use crate::store::StoreError;

/// Longest text field (prompt, tool input / output, message, body, attributes) in bytes.
pub const TEXT_LIMIT: usize = 8192;

/// Item types, as accepted by `?types=`.
pub const TYPES: &[&str] = &["prompt", "model_call", "tool_call", "error", "event", "transition", "command"];
/// What `?types=` defaults to: everything but `event`.
const DEFAULT_TYPES: &str = "prompt,model_call,tool_call,error,transition,command";

/// One query over every source of the session, merged by name. Row key `rk` is the source
/// table's `rowid` (tables are append-only), and each (table, type) has its own `rank`, so
/// (time, rank, rk) is unique and stable. Parameters: $1 session id, $2/$3/$4 cursor (time µs,
/// rank, rk: items strictly after it), $5 limit, $6 types (comma list), $7 longest text in
/// characters (`TEXT_LIMIT` + 1, cut to bytes afterwards).
/// Log records: `UserPromptSubmit` (hook) and `claude_code.user_prompt` are prompts; severity >= 17,
/// `claude_code.api_error`, hook `PostToolUseFailure` / `StopFailure` are errors; the rest are
/// events, except Claude Code's `api_request` / `tool_result`, which are the model and tool calls.
const TIMELINE_SQL: &str = "
    WITH lg AS (
        SELECT rowid AS rk, time, event_name, body, severity_number, attributes, trace_id, span_id,
               attributes->>'agent_console.hook.payload' AS payload
        FROM logs WHERE session_id = $1::VARCHAR
    ),
    lj AS (
        SELECT *, TRY_CAST(payload AS JSON) AS pj,
               (payload IS NOT NULL AND TRY_CAST(payload AS JSON) IS NULL)
                 OR coalesce(attributes->>'agent_console.hook.payload_truncated', '') = 'true' AS cut,
               CASE WHEN event_name IN ('UserPromptSubmit', 'claude_code.user_prompt') THEN 'prompt'
                    WHEN severity_number >= 17
                         OR event_name IN ('claude_code.api_error', 'PostToolUseFailure', 'StopFailure') THEN 'error'
                    WHEN event_name IN ('claude_code.api_request', 'claude_code.tool_result') THEN NULL
                    ELSE 'event' END AS kind
        FROM lg
    ),
    hk AS (
        SELECT coalesce(attributes->>'tool_use_id', attributes->>'gen_ai.tool.call.id', pj->>'tool_use_id') AS id,
               max(pj->>'tool_input') AS input, max(pj->>'tool_response') AS output, bool_or(cut) AS cut
        FROM lj WHERE event_name IN ('PreToolUse', 'PostToolUse', 'PostToolUseFailure')
        GROUP BY 1
    ),
    sp AS (SELECT rowid AS rk, * FROM spans WHERE session_id = $1::VARCHAR),
    sio AS (
        SELECT trace_id, span_id,
               max(coalesce(attributes->>'input.value', attributes->>'gen_ai.tool.call.arguments')) AS input,
               max(coalesce(attributes->>'output.value', attributes->>'gen_ai.tool.call.result')) AS output
        FROM sp GROUP BY ALL
    ),
    tc AS (SELECT rowid AS rk, * FROM tool_calls WHERE session_id = $1::VARCHAR),
    items AS (
        SELECT time, 1 AS rank, rk, 'prompt' AS type,
               CASE WHEN event_name = 'UserPromptSubmit' THEN 'hook' ELSE 'claude_code' END AS source,
               coalesce(attributes->>'prompt.id', pj->>'prompt_id') AS prompt_id,
               left(CASE WHEN event_name = 'UserPromptSubmit' THEN pj->>'prompt'
                         ELSE nullif(attributes->>'prompt', '<REDACTED>') END, $7::BIGINT) AS prompt,
               CASE WHEN event_name = 'UserPromptSubmit' THEN length(pj->>'prompt')
                    ELSE TRY_CAST(attributes->>'prompt_length' AS BIGINT) END AS prompt_length,
               cut
        FROM lj WHERE kind = 'prompt'
        UNION ALL BY NAME
        SELECT time, 2 AS rank, rowid AS rk, 'model_call' AS type, model, provider, operation, input_tokens,
               output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, cost_source, duration_ms,
               error AS mc_error, trace_id, span_id, request_id
        FROM model_calls WHERE session_id = $1::VARCHAR
        UNION ALL BY NAME
        SELECT tc.time, 3 AS rank, tc.rk, 'tool_call' AS type, tc.tool_name, tc.tool_call_id, tc.duration_ms,
               tc.success, tc.error AS tool_error,
               left(coalesce(hk.input, sio.input), $7::BIGINT) AS input,
               left(coalesce(hk.output, sio.output), $7::BIGINT) AS output,
               coalesce(hk.cut, false) AS cut, tc.trace_id, tc.span_id
        FROM tc LEFT JOIN hk ON hk.id = tc.tool_call_id
             LEFT JOIN sio ON sio.trace_id = tc.trace_id AND sio.span_id = tc.span_id
        UNION ALL BY NAME
        SELECT time, 4 AS rank, rk, 'error' AS type, 'log' AS source, event_name AS name,
               left(coalesce(pj->>'error', attributes->>'error', attributes->>'error.message', body), $7::BIGINT)
                   AS message,
               coalesce(attributes->>'gen_ai.tool.name', pj->>'tool_name') AS tool_name,
               coalesce(attributes->>'tool_use_id', attributes->>'gen_ai.tool.call.id', pj->>'tool_use_id')
                   AS tool_call_id,
               severity_number, trace_id, span_id, cut
        FROM lj WHERE kind = 'error'
        UNION ALL BY NAME
        SELECT time, 5 AS rank, rk, 'error' AS type, 'span' AS source, name,
               left(status_message, $7::BIGINT) AS message, span_type, trace_id, span_id
        FROM sp WHERE error OR status_code = 'error'
        UNION ALL BY NAME
        SELECT time, 6 AS rank, rk, 'event' AS type, event_name AS name, left(body, $7::BIGINT) AS body,
               left(attributes::VARCHAR, $7::BIGINT) AS attributes, severity_number, trace_id, span_id, cut
        FROM lj WHERE kind = 'event'
        UNION ALL BY NAME
        SELECT time, 7 AS rank, rowid AS rk, 'transition' AS type, from_status, to_status, stuck, reason
        FROM session_transitions WHERE session_id = $1::VARCHAR
        UNION ALL BY NAME
        SELECT time, 8 AS rank, rowid AS rk, 'command' AS type, action, kind AS command_kind, command_id,
               approval_id, actor, left(result, $7::BIGINT) AS result
        FROM control_audit WHERE session_id = $1::VARCHAR
    )
    SELECT epoch_us(time) AS t, * FROM items
    WHERE list_contains(string_split($6::VARCHAR, ','), type)
      AND ($2::BIGINT IS NULL OR epoch_us(time) > $2::BIGINT
           OR (epoch_us(time) = $2::BIGINT
               AND (rank > $3::INTEGER OR (rank = $3::INTEGER AND rk > $4::BIGINT))))
    ORDER BY t, rank, rk
    LIMIT $5::BIGINT";

/// Output field name and SQL column of each item type (after `cursor`, `type`, `time`).
const FIELDS: &[(&str, &[(&str, &str)])] = &[
    (
        "prompt",
        &[("source", "source"), ("prompt_id", "prompt_id"), ("prompt", "prompt"), ("prompt_length", "prompt_length")],
    ),
    (
        "model_call",
        &[
            ("model", "model"),
            ("provider", "provider"),
            ("operation", "operation"),
            ("input_tokens", "input_tokens"),
            ("output_tokens", "output_tokens"),
            ("cache_read_tokens", "cache_read_tokens"),
            ("cache_write_tokens", "cache_write_tokens"),
            ("cost_usd", "cost_usd"),
            ("cost_source", "cost_source"),
            ("duration_ms", "duration_ms"),
            ("error", "mc_error"),
            ("trace_id", "trace_id"),
            ("span_id", "span_id"),
            ("request_id", "request_id"),
        ],
    ),
    (
        "tool_call",
        &[
            ("tool_name", "tool_name"),
            ("tool_call_id", "tool_call_id"),
            ("duration_ms", "duration_ms"),
            ("success", "success"),
            ("error", "tool_error"),
            ("input", "input"),
            ("output", "output"),
            ("trace_id", "trace_id"),
            ("span_id", "span_id"),
        ],
    ),
    (
        "error",
        &[
            ("source", "source"),
            ("name", "name"),
            ("message", "message"),
            ("tool_name", "tool_name"),
            ("tool_call_id", "tool_call_id"),
            ("severity_number", "severity_number"),
            ("span_type", "span_type"),
            ("trace_id", "trace_id"),
            ("span_id", "span_id"),
        ],
    ),
    (
        "event",
        &[
            ("name", "name"),
            ("body", "body"),
            ("attributes", "attributes"),
            ("severity_number", "severity_number"),
            ("trace_id", "trace_id"),
            ("span_id", "span_id"),
        ],
    ),
    (
        "transition",
        &[("from_status", "from_status"), ("to_status", "to_status"), ("stuck", "stuck"), ("reason", "reason")],
    ),
    (
        "command",
        &[
            ("action", "action"),
            ("kind", "command_kind"),
            ("command_id", "command_id"),
            ("approval_id", "approval_id"),
            ("actor", "actor"),
            ("result", "result"),
        ],
    ),
];

/// Fields cut to `TEXT_LIMIT` bytes.
const TEXT_FIELDS: &[&str] = &["prompt", "input", "output", "message", "body", "attributes", "result"];

#[derive(Debug, Deserialize, Default)]
pub struct TimelineParams {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub types: Option<String>,
}

/// Cut a string value to at most `limit` bytes on a character boundary; true when it was cut.
fn cap(v: &mut Value, limit: usize) -> bool {
    let Value::String(s) = v else { return false };
    if s.len() <= limit {
        return false;
    }
    let mut end = limit;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    true
}

/// One SQL row as a timeline item, and its cursor.
fn item(mut row: Map<String, Value>) -> (Value, String) {
    let key = |r: &Map<String, Value>, k: &str| r.get(k).and_then(Value::as_i64).unwrap_or(0).to_string();
    let cursor = encode_cursor(&[&key(&row, "t"), &key(&row, "rank"), &key(&row, "rk")]);
    let kind = row.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
    let mut truncated = row.get("cut").and_then(Value::as_bool).unwrap_or(false);
    let mut out = Map::new();
    out.insert("cursor".into(), Value::String(cursor.clone()));
    out.insert("type".into(), Value::String(kind.clone()));
    out.insert("time".into(), row.remove("time").unwrap_or(Value::Null));
    let fields = FIELDS.iter().find(|(k, _)| *k == kind).map(|(_, f)| *f).unwrap_or(&[]);
    for (name, col) in fields {
        let mut v = row.remove(*col).unwrap_or(Value::Null);
        if TEXT_FIELDS.contains(name) {
            truncated |= cap(&mut v, TEXT_LIMIT);
        }
        out.insert((*name).into(), v);
    }
    out.insert("truncated".into(), Value::Bool(truncated));
    (Value::Object(out), cursor)
}

fn parse_cursor(c: &str) -> Option<(i64, i32, i64)> {
    let p = decode_cursor(c, 3)?;
    Some((p[0].parse().ok()?, p[1].parse().ok()?, p[2].parse().ok()?))
}

/// `GET /api/sessions/{id}/timeline`: `{"session_id", "items": [...], "next_cursor"}`; each item is
/// `{"cursor", "type", "time", ...fields, "truncated"}`. `next_cursor` is null at the end; an
/// item's own `cursor` resumes after it (e.g. to poll a live session for what came next).
pub async fn timeline(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(p): Query<TimelineParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(p.limit, 200, 1000);
    let types =
        comma_list("types", p.types.as_deref(), TYPES).map_err(refused)?.unwrap_or_else(|| DEFAULT_TYPES.into());
    let after = match p.cursor.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(parse_cursor(c).ok_or_else(|| refused(format!("cursor {c:?} is not a timeline cursor")))?),
    };
    let (t, rank, rk) = match after {
        Some((t, rank, rk)) => (Some(t.to_string()), Some(rank.to_string()), Some(rk.to_string())),
        None => (None, None, None),
    };
    let params = vec![
        Some(id.clone()),
        t,
        rank,
        rk,
        Some((limit + 1).to_string()),
        Some(types),
        Some((TEXT_LIMIT + 1).to_string()),
    ];
    let rows = s.store.reader.query_objects(TIMELINE_SQL, params).await?;
    if rows.is_empty() && !exists(&s, &id).await? {
        return Err(ApiError(StoreError::NotFound(format!("no session {id:?}"))));
    }
    let more = rows.len() > limit as usize;
    let mut items = Vec::with_capacity(rows.len().min(limit as usize));
    let mut last = None;
    for row in rows.into_iter().take(limit as usize) {
        let (v, c) = item(row);
        items.push(v);
        last = Some(c);
    }
    let next_cursor = if more { last } else { None };
    Ok(Json(json!({ "session_id": id, "items": items, "next_cursor": next_cursor })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_on_char_boundaries() {
        let mut v = Value::String("é".repeat(10));
        assert!(cap(&mut v, 5));
        assert_eq!(v, Value::String("éé".into()));
        let mut short = Value::String("abc".into());
        assert!(!cap(&mut short, 3));
        assert!(!cap(&mut Value::Null, 3));
    }

    #[test]
    fn items_keep_their_type_fields() {
        let row: Map<String, Value> = serde_json::from_value(json!({
            "t": 5, "rank": 3, "rk": 9, "time": "1970-01-01T00:00:00.000005Z", "type": "tool_call",
            "tool_name": "Bash", "tool_call_id": "toolu_1", "duration_ms": 82.0, "success": false,
            "tool_error": "exit 1", "input": "x".repeat(TEXT_LIMIT + 1), "output": null, "cut": false,
            "trace_id": null, "span_id": null, "model": null
        }))
        .expect("row");
        let (v, cursor) = item(row);
        assert_eq!(parse_cursor(&cursor), Some((5, 3, 9)));
        assert_eq!(v["cursor"], json!(cursor));
        assert_eq!(v["error"], json!("exit 1"));
        assert_eq!(v["truncated"], json!(true));
        assert_eq!(v["input"].as_str().map(str::len), Some(TEXT_LIMIT));
        assert!(v.get("model").is_none(), "fields of other types are left out: {v}");
    }
}
