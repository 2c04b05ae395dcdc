//! Ledger records -> one OTLP `ExportLogsServiceRequest` (protobuf), with the attribute names of
//! `agent-console-conventions`.

use agent_console_conventions::{attr, openclaw, source};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::runs::{Record, SessionInfo, Usage};

fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue { key: key.to_string(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

fn str_kv(key: &str, v: &str) -> KeyValue {
    kv(key, Value::StringValue(v.to_string()))
}

fn session_attrs(s: &SessionInfo, out: &mut Vec<KeyValue>) {
    out.push(str_kv(attr::SOURCE, source::OPENCLAW));
    out.push(str_kv(attr::SESSION_ID, &s.key));
    out.push(str_kv(attr::CONVERSATION_ID, &s.key));
    out.push(str_kv(attr::OPENCLAW_SESSION_KEY, &s.key));
    if let Some(id) = &s.session_id {
        out.push(str_kv(openclaw::SESSION_ID_ATTR, id));
    }
    if let Some(a) = &s.agent_id {
        out.push(str_kv(attr::AGENT_ID, a));
        out.push(str_kv(attr::AGENT_NAME, a));
    }
    if let Some(p) = &s.parent_key {
        out.push(str_kv(attr::PARENT_SESSION_ID, p));
    }
    if !s.children.is_empty() {
        let values = s.children.iter().map(|c| AnyValue { value: Some(Value::StringValue(c.clone())) }).collect();
        out.push(kv(openclaw::CHILD_SESSIONS, Value::ArrayValue(ArrayValue { values })));
    }
    if let Some(m) = &s.model {
        out.push(str_kv(attr::MODEL, m));
    }
    if let Some(p) = &s.provider {
        out.push(str_kv(attr::PROVIDER, p));
    }
}

fn usage_attrs(u: &Usage, out: &mut Vec<KeyValue>) {
    // OTel convention: input includes the cache (the gateway's `input` does not).
    out.push(kv(attr::INPUT_TOKENS, Value::IntValue(u.otel_input())));
    out.push(kv(attr::OUTPUT_TOKENS, Value::IntValue(u.output)));
    if u.cache_read > 0 {
        out.push(kv(attr::CACHE_READ_TOKENS, Value::IntValue(u.cache_read)));
    }
    if u.cache_write > 0 {
        out.push(kv(attr::CACHE_WRITE_TOKENS, Value::IntValue(u.cache_write)));
    }
    out.push(kv(attr::COST_USD, Value::DoubleValue(u.cost)));
}

fn record(r: &Record, now_ns: u64) -> LogRecord {
    let mut attributes = Vec::with_capacity(16);
    let (time_ms, event_name, body, severity) = match r {
        Record::Status(st) => {
            session_attrs(&st.session, &mut attributes);
            attributes.push(str_kv(attr::OPENCLAW_STATUS, &st.status));
            if let Some(run) = &st.run_id {
                attributes.push(str_kv(attr::OPENCLAW_RUN_ID, run));
            }
            if let Some(u) = &st.run_usage {
                attributes.push(kv(openclaw::RUN_INPUT_TOKENS, Value::IntValue(u.otel_input())));
                attributes.push(kv(openclaw::RUN_OUTPUT_TOKENS, Value::IntValue(u.output)));
                attributes.push(kv(openclaw::RUN_COST_USD, Value::DoubleValue(u.cost)));
                attributes.push(kv(openclaw::RUN_CALLS, Value::IntValue(u.calls)));
            }
            let sev = if matches!(st.status.as_str(), "failed" | "timeout") {
                SeverityNumber::Warn
            } else {
                SeverityNumber::Info
            };
            (st.time_ms, openclaw::STATUS_EVENT, Some(st.status.clone()), sev)
        }
        Record::Call(c) => {
            session_attrs(&c.session, &mut attributes);
            // The call's own model and provider win over the session's.
            attributes.retain(|a| a.key != attr::MODEL && a.key != attr::PROVIDER);
            if let Some(m) = c.model.as_ref().or(c.session.model.as_ref()) {
                attributes.push(str_kv(attr::MODEL, m));
            }
            if let Some(p) = c.provider.as_ref().or(c.session.provider.as_ref()) {
                attributes.push(str_kv(attr::PROVIDER, p));
            }
            attributes.push(str_kv(openclaw::MESSAGE_ID_ATTR, &c.message_id));
            if let Some(run) = &c.run_id {
                attributes.push(str_kv(attr::OPENCLAW_RUN_ID, run));
            }
            attributes.push(str_kv(attr::OPERATION_NAME, "chat"));
            usage_attrs(&c.usage, &mut attributes);
            (c.time_ms, openclaw::CALL_EVENT, None, SeverityNumber::Info)
        }
        Record::Reconcile(rc) => {
            session_attrs(&rc.session, &mut attributes);
            attributes.push(str_kv(openclaw::RECONCILE_ID_ATTR, &rc.id));
            attributes.push(str_kv(attr::OPERATION_NAME, openclaw::RECONCILE_OPERATION));
            attributes.push(kv(openclaw::RUN_CALLS, Value::IntValue(rc.usage.calls)));
            usage_attrs(&rc.usage, &mut attributes);
            if let Some(g) = &rc.gateway {
                attributes.push(kv(openclaw::SESSION_TOTAL_INPUT_TOKENS, Value::IntValue(g.otel_input())));
                attributes.push(kv(openclaw::SESSION_TOTAL_OUTPUT_TOKENS, Value::IntValue(g.output)));
                attributes.push(kv(openclaw::SESSION_TOTAL_CACHE_READ_TOKENS, Value::IntValue(g.cache_read)));
                attributes.push(kv(openclaw::SESSION_TOTAL_CACHE_WRITE_TOKENS, Value::IntValue(g.cache_write)));
                attributes.push(kv(openclaw::SESSION_TOTAL_COST_USD, Value::DoubleValue(g.cost)));
            }
            (rc.time_ms, openclaw::RECONCILE_EVENT, None, SeverityNumber::Info)
        }
        Record::Run(run) => {
            session_attrs(&run.session, &mut attributes);
            attributes.push(str_kv(attr::OPENCLAW_RUN_ID, &run.run_id));
            attributes.push(str_kv(attr::OPERATION_NAME, openclaw::RUN_OPERATION));
            if let Some(s) = &run.status {
                attributes.push(str_kv(attr::OPENCLAW_STATUS, s));
            }
            if let Some(t) = run.input_tokens {
                attributes.push(kv(attr::INPUT_TOKENS, Value::IntValue(t)));
            }
            if let Some(t) = run.output_tokens {
                attributes.push(kv(attr::OUTPUT_TOKENS, Value::IntValue(t)));
            }
            if let Some(c) = run.cost_usd {
                attributes.push(kv(attr::COST_USD, Value::DoubleValue(c)));
            }
            (run.time_ms, openclaw::RUN_EVENT, None, SeverityNumber::Info)
        }
    };
    LogRecord {
        time_unix_nano: u64::try_from(time_ms).unwrap_or(0).saturating_mul(1_000_000),
        observed_time_unix_nano: now_ns,
        severity_number: severity as i32,
        severity_text: severity.as_str_name().trim_start_matches("SEVERITY_NUMBER_").to_string(),
        body: body.map(|b| AnyValue { value: Some(Value::StringValue(b)) }),
        attributes,
        event_name: event_name.to_string(),
        ..Default::default()
    }
}

/// Encode `records` as one logs export (protobuf bytes).
pub fn encode<'a>(records: impl Iterator<Item = &'a Record>, task_id: Option<&str>, now_ns: u64) -> Vec<u8> {
    let mut res = vec![str_kv(attr::SERVICE_NAME, openclaw::SERVICE), str_kv(attr::SOURCE, source::OPENCLAW)];
    if let Some(t) = task_id {
        res.push(str_kv(attr::TASK_ID, t));
    }
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource { attributes: res, ..Default::default() }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: openclaw::SCOPE.to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    ..Default::default()
                }),
                log_records: records.map(|r| record(r, now_ns)).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    req.encode_to_vec()
}
