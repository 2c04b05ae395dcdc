//! The exchange between the hook binary and the collector, shared by both sides so they cannot
//! drift. The binary posts the hook JSON exactly as Claude Code gave it to `POST /hooks/claude`
//! (the route Claude Code's own `http` hooks use), with the headers below; the collector stores it
//! (deduplicated by record id), runs the one decision function, and answers with an `Answer`
//! envelope (JSON) signed with the shared token: `HMAC-SHA256(token, nonce || body)`, hex, in
//! `HDR_SIGNATURE`. `http` hooks (no `HDR_CLIENT`) get the hook output JSON itself as the body.
//!
//! A paused session is a *hold*: the collector answers `hold: true` with the answer to give if the
//! hook must stop waiting (`output`), and the binary asks again (same record id, so it is stored
//! once) with `HDR_WAIT_MS` set, long-polling until the hold ends or its own deadline passes.
//! `POST /hooks/claude/inbox` is the `--inbox` waiter (an `asyncRewake` hook): it long-polls for a
//! message to wake an idle interactive session with (`InboxAnswer`).

use serde_json::{json, Map, Value};

/// The hook call route (also Claude Code's `http` hook URL).
pub const HOOK_PATH: &str = "/hooks/claude";
/// The `--inbox` waiter's long-poll route.
pub const INBOX_PATH: &str = "/hooks/claude/inbox";

/// `agent-console-hook/<version>`: the call comes from the hook binary (transport `command`).
pub const HDR_CLIENT: &str = "x-agent-console-client";
/// The hook call's id (32 hex digits), the same on every re-send: stored once, answered the same.
pub const HDR_RECORD_ID: &str = "x-agent-console-record-id";
/// A fresh random value per request (hex); the signature covers it, so an answer cannot be replayed.
pub const HDR_NONCE: &str = "x-agent-console-nonce";
/// How long the collector may hold this request while a hold lasts (ms; 0 = answer at once).
pub const HDR_WAIT_MS: &str = "x-agent-console-wait-ms";
/// A spooled call sent late: store it (at this time, ns since the epoch), decide nothing.
pub const HDR_REPLAY_TIME_NS: &str = "x-agent-console-replay-time-ns";
/// The binary's configuration the translation needs (agent name, task id, payload cut-off).
pub const HDR_AGENT_NAME: &str = "x-agent-console-agent-name";
pub const HDR_TASK_ID: &str = "x-agent-console-task-id";
pub const HDR_MAX_PAYLOAD_BYTES: &str = "x-agent-console-max-payload-bytes";
/// `http` hooks: the longest hold the hook's configured `timeout` allows, in seconds (set it in the
/// hook's `headers`; without it the collector holds at most its `--control-http-hold-secs`).
pub const HDR_HOLD_SECS: &str = "x-agent-console-hold-secs";
/// Answer signature: hex `HMAC-SHA256(token, nonce || body)`.
pub const HDR_SIGNATURE: &str = "x-agent-console-signature";

/// The collector's answer to a hook call from the binary.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Answer {
    /// The call was stored (false: keep it in the spool and re-send it later).
    pub stored: bool,
    /// A hold is on: ask again; print `output` only when giving up at the deadline.
    pub hold: bool,
    /// The hook output JSON to print (Claude Code applies it), if any.
    pub output: Option<Value>,
    /// `TERM`: after printing, end the Claude Code process this hook runs under (hard kill).
    pub signal: Option<String>,
}

impl Answer {
    pub fn to_json(&self) -> Value {
        json!({ "stored": self.stored, "hold": self.hold, "output": self.output, "signal": self.signal })
    }

    pub fn from_json(v: &Value) -> Option<Answer> {
        let o = v.as_object()?;
        Some(Answer {
            stored: o.get("stored").and_then(Value::as_bool).unwrap_or(false),
            hold: o.get("hold").and_then(Value::as_bool).unwrap_or(false),
            output: o.get("output").filter(|v| !v.is_null()).cloned(),
            signal: o.get("signal").and_then(Value::as_str).map(str::to_string),
        })
    }
}

/// What the `--inbox` waiter does with the collector's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum InboxAnswer {
    /// Nothing yet: ask again.
    Wait,
    /// Another waiter took over, or the session ended or was killed: exit 0.
    Release,
    /// Wake the session with this message: exit 2 with it on stderr.
    Deliver(String),
    /// Hard kill: end the Claude Code process, then exit 0.
    Kill,
}

impl InboxAnswer {
    pub fn to_json(&self) -> Value {
        match self {
            InboxAnswer::Wait => json!({ "action": "wait" }),
            InboxAnswer::Release => json!({ "action": "release" }),
            InboxAnswer::Deliver(m) => json!({ "action": "deliver", "message": m }),
            InboxAnswer::Kill => json!({ "action": "kill" }),
        }
    }

    pub fn from_json(v: &Value) -> Option<InboxAnswer> {
        Some(match v.get("action")?.as_str()? {
            "wait" => InboxAnswer::Wait,
            "release" => InboxAnswer::Release,
            "deliver" => InboxAnswer::Deliver(v.get("message")?.as_str()?.to_string()),
            "kill" => InboxAnswer::Kill,
            _ => return None,
        })
    }
}

/// Longest text kept in any decision field.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;

fn bounded(v: &Value) -> Option<Value> {
    let s = v.as_str()?;
    let (cut, _) = crate::translate::truncate(s, MAX_FIELD_BYTES);
    Some(Value::String(cut.to_string()))
}

/// Keep only the decision fields Claude Code defines that this integration uses, for the hook
/// event being answered: `continue` + `stopReason`, `decision: "block"` + `reason` (Stop,
/// PostToolUse, UserPromptSubmit, PostToolBatch), and `hookSpecificOutput` with the same
/// `hookEventName`, `additionalContext` and, at PreToolUse, `permissionDecision` `deny` or `ask`
/// with its reason. Never `allow`, `updatedInput` or anything else: an answer that passed the
/// signature check still cannot approve or rewrite a tool call. `None` when nothing is left.
pub fn sanitize_output(event: &str, output: &Value) -> Option<Value> {
    let o = output.as_object()?;
    let mut out = Map::new();
    if let Some(false) = o.get("continue").and_then(Value::as_bool) {
        out.insert("continue".into(), Value::Bool(false));
        if let Some(r) = o.get("stopReason").and_then(bounded) {
            out.insert("stopReason".into(), r);
        }
    }
    let block_events = ["Stop", "SubagentStop", "PostToolUse", "UserPromptSubmit", "PostToolBatch"];
    if o.get("decision").and_then(Value::as_str) == Some("block") && block_events.contains(&event) {
        out.insert("decision".into(), Value::String("block".into()));
        if let Some(r) = o.get("reason").and_then(bounded) {
            out.insert("reason".into(), r);
        }
    }
    if let Some(h) = o.get("hookSpecificOutput").and_then(Value::as_object) {
        if h.get("hookEventName").and_then(Value::as_str) == Some(event) {
            let mut hs = Map::new();
            hs.insert("hookEventName".into(), Value::String(event.to_string()));
            if let Some(c) = h.get("additionalContext").and_then(bounded) {
                hs.insert("additionalContext".into(), c);
            }
            if event == "PreToolUse" {
                if let Some(d @ ("deny" | "ask")) = h.get("permissionDecision").and_then(Value::as_str) {
                    hs.insert("permissionDecision".into(), Value::String(d.to_string()));
                    if let Some(r) = h.get("permissionDecisionReason").and_then(bounded) {
                        hs.insert("permissionDecisionReason".into(), r);
                    }
                }
            }
            if hs.len() > 1 {
                out.insert("hookSpecificOutput".into(), Value::Object(hs));
            }
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes a signature covers: the request's nonce, a newline, the answer body.
pub fn signed_bytes(nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(nonce.len() + 1 + body.len());
    v.extend_from_slice(nonce.as_bytes());
    v.push(b'\n');
    v.extend_from_slice(body);
    v
}

/// HMAC-SHA256 signatures of answers (`sign` feature: the binary and the collector use this one
/// implementation).
#[cfg(feature = "sign")]
pub mod sign {
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::Sha256;

    fn mac(key: &[u8], nonce: &str, body: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length; this cannot fail.
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
        m.update(&super::signed_bytes(nonce, body));
        m
    }

    /// Hex `HMAC-SHA256(key, nonce || "\n" || body)`.
    pub fn signature(key: &[u8], nonce: &str, body: &[u8]) -> String {
        super::hex(&mac(key, nonce, body).finalize().into_bytes())
    }

    /// Constant-time check of a hex signature.
    pub fn verify(key: &[u8], nonce: &str, body: &[u8], sig_hex: &str) -> bool {
        let Some(tag) = unhex(sig_hex.trim()) else { return false };
        mac(key, nonce, body).verify_slice(&tag).is_ok()
    }

    fn unhex(s: &str) -> Option<Vec<u8>> {
        if !s.len().is_multiple_of(2) {
            return None;
        }
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn rfc4231_case_2_and_round_trip() {
            // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
            let m = {
                let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(b"Jefe").expect("key");
                m.update(b"what do ya want for nothing?");
                super::super::hex(&m.finalize().into_bytes())
            };
            assert_eq!(m, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
            let s = signature(b"tok", "n1", b"{\"a\":1}");
            assert!(verify(b"tok", "n1", b"{\"a\":1}", &s));
            assert!(!verify(b"tok", "n2", b"{\"a\":1}", &s), "another nonce");
            assert!(!verify(b"other", "n1", b"{\"a\":1}", &s), "another key");
            assert!(!verify(b"tok", "n1", b"{\"a\":2}", &s), "another body");
            assert!(!verify(b"tok", "n1", b"{\"a\":1}", "zz"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_keeps_only_defined_fields_for_this_event() {
        let deny = json!({"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
            "permissionDecisionReason": "no", "updatedInput": {"command": "rm -rf /"}}, "continue": false,
            "stopReason": "x", "suppressOutput": true});
        assert_eq!(
            sanitize_output("PreToolUse", &deny),
            Some(json!({"continue": false, "stopReason": "x", "hookSpecificOutput": {"hookEventName": "PreToolUse",
                "permissionDecision": "deny", "permissionDecisionReason": "no"}}))
        );
        let allow = json!({"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "allow"}});
        assert_eq!(sanitize_output("PreToolUse", &allow), None, "allow is never printed");
        let other = json!({"hookSpecificOutput": {"hookEventName": "PostToolUse", "additionalContext": "c"}});
        assert_eq!(sanitize_output("PreToolUse", &other), None, "another event's output");
        let ctx = json!({"hookSpecificOutput": {"hookEventName": "PostToolBatch", "additionalContext": "hi"}});
        assert_eq!(sanitize_output("PostToolBatch", &ctx), Some(ctx.clone()));
        let block = json!({"decision": "block", "reason": "go on"});
        assert_eq!(sanitize_output("Stop", &block), Some(block.clone()));
        assert_eq!(sanitize_output("PreToolUse", &block), None);
        assert_eq!(sanitize_output("Stop", &json!({"continue": true})), None);
        assert_eq!(sanitize_output("Stop", &json!([1])), None);
    }

    #[test]
    fn envelopes_round_trip() {
        let a = Answer { stored: true, hold: true, output: Some(json!({"continue": false})), signal: None };
        assert_eq!(Answer::from_json(&a.to_json()), Some(a));
        for i in [InboxAnswer::Wait, InboxAnswer::Release, InboxAnswer::Deliver("m".into()), InboxAnswer::Kill] {
            assert_eq!(InboxAnswer::from_json(&i.to_json()), Some(i));
        }
        assert_eq!(InboxAnswer::from_json(&json!({"action": "x"})), None);
    }
}
