//! Control state in the database (migration 0008): every change is a list of `Op`s written in one
//! `Store::apply` transaction (commit before the change takes effect or is answered), and `load`
//! reads the open state back at start-up, so commands survive a restart and a pause stays a pause.

use duckdb::{params, Connection};
use serde_json::Value;

use super::model::{Approval, ApprovalStatus, Command, Kind, Mode, SessionCtl, Status, Transport};
use super::policy::PolicySpec;
use crate::store::{Store, StoreError};

/// A UTC `TIMESTAMP` from microseconds since the epoch.
fn ts(us: i64) -> duckdb::types::Value {
    duckdb::types::Value::Timestamp(duckdb::types::TimeUnit::Microsecond, us)
}

fn opt_ts(us: Option<i64>) -> duckdb::types::Value {
    us.map_or(duckdb::types::Value::Null, ts)
}

/// One row of `control_audit`.
#[derive(Debug, Clone)]
pub struct Audit {
    pub time_us: i64,
    pub actor: String,
    pub action: &'static str,
    pub session_id: Option<String>,
    pub command_id: Option<String>,
    pub approval_id: Option<String>,
    pub kind: Option<&'static str>,
    pub result: Option<String>,
    pub detail: Option<Value>,
}

/// A write, applied in order inside one transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// Insert or overwrite a command's row (status, steps, result).
    Command(Command),
    Audit(Audit),
    /// A session's control state.
    Session {
        session_id: String,
        ctl: SessionCtl,
    },
    Approval(Approval),
    Policy {
        spec: PolicySpec,
        at_us: i64,
        by: String,
    },
}

const UPSERT_COMMAND: &str = "
    INSERT OR REPLACE INTO control_commands (command_id, session_id, kind, message, reason, tool_use_id, hard,
        for_session, issued_by, status, result, delivered_via, accepted_at, delivered_at, observed_at, ended_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

const UPSERT_SESSION: &str = "
    INSERT OR REPLACE INTO control_sessions (session_id, mode, mode_command_id, mode_since, mode_by, mode_reason,
        hard_kill, allowed_rules)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?::VARCHAR[])";

const UPSERT_APPROVAL: &str = "
    INSERT OR REPLACE INTO control_approvals (approval_id, session_id, tool_use_id, tool_name, tool_input, rule,
        status, default_decision, requested_at, expires_at, answered_at, answered_by, answer_reason, command_id)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

impl Op {
    fn run(&self, conn: &Connection) -> Result<(), StoreError> {
        match self {
            Op::Command(c) => {
                conn.prepare_cached(UPSERT_COMMAND)?.execute(params![
                    c.id,
                    c.session_id,
                    c.kind.as_str(),
                    c.message,
                    c.reason,
                    c.tool_use_id,
                    c.hard,
                    c.for_session,
                    c.by,
                    c.status.as_str(),
                    c.result,
                    c.delivered_via,
                    ts(c.accepted_us),
                    opt_ts(c.delivered_us),
                    opt_ts(c.observed_us),
                    opt_ts(c.ended_us),
                ])?;
            }
            Op::Audit(a) => {
                conn.prepare_cached("INSERT INTO control_audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")?.execute(
                    params![
                        ts(a.time_us),
                        a.actor,
                        a.action,
                        a.session_id,
                        a.command_id,
                        a.approval_id,
                        a.kind,
                        a.result,
                        a.detail.as_ref().map(Value::to_string),
                    ],
                )?;
            }
            Op::Session { session_id, ctl } => {
                let mut rules: Vec<&String> = ctl.allowed_rules.iter().collect();
                rules.sort();
                conn.prepare_cached(UPSERT_SESSION)?.execute(params![
                    session_id,
                    ctl.mode.as_str(),
                    ctl.mode_command,
                    ts(ctl.mode_since_us),
                    ctl.mode_by,
                    ctl.mode_reason,
                    ctl.hard_kill,
                    serde_json::to_string(&rules).unwrap_or_else(|_| "[]".into()),
                ])?;
            }
            Op::Approval(a) => {
                conn.prepare_cached(UPSERT_APPROVAL)?.execute(params![
                    a.id,
                    a.session_id,
                    a.tool_use_id,
                    a.tool_name,
                    a.tool_input.to_string(),
                    a.rule,
                    a.status.as_str(),
                    if a.default_allow { "allow" } else { "deny" },
                    ts(a.requested_us),
                    ts(a.expires_us),
                    opt_ts(a.answered_us),
                    a.answered_by,
                    a.reason,
                    a.command_id,
                ])?;
            }
            Op::Policy { spec, at_us, by } => {
                let json = serde_json::to_string(spec).map_err(|e| StoreError::Db(e.to_string()))?;
                conn.execute(
                    "INSERT OR REPLACE INTO control_policy VALUES (1, ?, ?, ?)",
                    params![json, ts(*at_us), by],
                )?;
            }
        }
        Ok(())
    }
}

/// Write `ops` in one transaction; resolves after the commit.
pub async fn write(store: &Store, ops: Vec<Op>) -> Result<(), StoreError> {
    if ops.is_empty() {
        return Ok(());
    }
    // Control rows read no telemetry: committed ahead of the pending batch.
    store
        .apply_now(move |conn| {
            for op in &ops {
                op.run(conn)?;
            }
            Ok(())
        })
        .await
}

/// What `load` reads back.
#[derive(Debug, Default)]
pub struct Loaded {
    pub sessions: Vec<(String, SessionCtl)>,
    pub commands: Vec<Command>,
    pub approvals: Vec<Approval>,
    pub policy: Option<PolicySpec>,
    /// (session, transport attribute, event names, legacy hooks, openclaw) from recent logs.
    pub seen: Vec<SeenRow>,
}

#[derive(Debug)]
pub struct SeenRow {
    pub session_id: String,
    pub transport: Option<Transport>,
    pub legacy: bool,
    pub openclaw: bool,
    pub events: Vec<String>,
    pub ended: bool,
    pub agent_id: Option<String>,
}

const OPEN_COMMANDS: &str = "
    SELECT command_id, session_id, kind, message, reason, tool_use_id, hard, for_session, issued_by, status, result,
           delivered_via, epoch_us(accepted_at), epoch_us(delivered_at), epoch_us(observed_at), epoch_us(ended_at)
    FROM control_commands WHERE status IN ('accepted', 'delivered') ORDER BY accepted_at, command_id";

const RECENT_APPROVALS: &str = "
    SELECT approval_id, session_id, tool_use_id, tool_name, tool_input::VARCHAR, rule, status, default_decision,
           epoch_us(requested_at), epoch_us(expires_at), epoch_us(answered_at), answered_by, answer_reason, command_id
    FROM control_approvals WHERE status = 'pending' OR requested_at >= make_timestamp(?::BIGINT)";

/// Hook sessions seen recently: how their hooks arrived and which events (for capabilities).
const SEEN: &str = "
    WITH recent AS (
        SELECT session_id FROM sessions WHERE last_seen >= make_timestamp(?::BIGINT)
        ORDER BY last_seen DESC LIMIT 20000
    )
    SELECT session_id, any_value(attributes->>'agent_console.hook.transport') FILTER (
               WHERE attributes->>'agent_console.hook.transport' IS NOT NULL),
           bool_or(scope_name = 'agent-console-hook' AND attributes->>'agent_console.hook.transport' IS NULL),
           bool_or(scope_name = 'agent-console-openclaw'),
           string_agg(DISTINCT event_name, chr(10)) FILTER (WHERE scope_name = 'agent-console-hook' AND event_name IS NOT NULL),
           any_value(agent_id) FILTER (WHERE scope_name = 'agent-console-hook')
    FROM logs WHERE session_id IN (SELECT session_id FROM recent)
      AND scope_name IN ('agent-console-hook', 'agent-console-openclaw')
    GROUP BY session_id";

/// Read the open control state; `since_us` bounds how far back hook activity and answered
/// approvals are read.
pub fn load(conn: &Connection, since_us: i64) -> Result<Loaded, StoreError> {
    let mut out = Loaded::default();
    let mut stmt = conn.prepare(
        "SELECT session_id, mode, mode_command_id, epoch_us(mode_since), mode_by, mode_reason, hard_kill,
                to_json(coalesce(allowed_rules, []::VARCHAR[]))::VARCHAR
         FROM control_sessions",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let mode: String = r.get(1)?;
        let rules: String = r.get(7)?;
        let ctl = SessionCtl {
            mode: Mode::parse(&mode),
            mode_command: r.get(2)?,
            mode_since_us: r.get(3)?,
            mode_by: r.get(4)?,
            mode_reason: r.get(5)?,
            hard_kill: r.get(6)?,
            allowed_rules: serde_json::from_str::<Vec<String>>(&rules).unwrap_or_default().into_iter().collect(),
            ..SessionCtl::default()
        };
        out.sessions.push((r.get(0)?, ctl));
    }
    let mut stmt = conn.prepare(OPEN_COMMANDS)?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let kind: String = r.get(2)?;
        let status: String = r.get(9)?;
        let Some(kind) = Kind::parse(&kind) else { continue };
        out.commands.push(Command {
            id: r.get(0)?,
            session_id: r.get(1)?,
            kind,
            message: r.get(3)?,
            reason: r.get(4)?,
            tool_use_id: r.get(5)?,
            hard: r.get(6)?,
            for_session: r.get(7)?,
            by: r.get(8)?,
            status: Status::parse(&status),
            result: r.get(10)?,
            delivered_via: r.get(11)?,
            accepted_us: r.get(12)?,
            delivered_us: r.get(13)?,
            observed_us: r.get(14)?,
            ended_us: r.get(15)?,
        });
    }
    let mut stmt = conn.prepare(RECENT_APPROVALS)?;
    let mut rows = stmt.query(params![since_us])?;
    while let Some(r) = rows.next()? {
        let input: Option<String> = r.get(4)?;
        let status: String = r.get(6)?;
        let default: String = r.get(7)?;
        let answered_us: Option<i64> = r.get(10)?;
        out.approvals.push(Approval {
            id: r.get(0)?,
            session_id: r.get(1)?,
            tool_use_id: r.get(2)?,
            tool_name: r.get(3)?,
            tool_input: input.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(Value::Null),
            rule: r.get(5)?,
            status: ApprovalStatus::parse(&status),
            default_allow: default == "allow",
            requested_us: r.get(8)?,
            expires_us: r.get(9)?,
            answered_us,
            answered_by: r.get(11)?,
            reason: r.get(12)?,
            command_id: r.get(13)?,
            // Unknown after a restart: a hook asking again gets the answer (once more).
            delivered: false,
        });
    }
    let policy: Option<String> =
        conn.query_row("SELECT policy::VARCHAR FROM control_policy WHERE singleton = 1", [], |r| r.get(0)).ok();
    out.policy = policy.and_then(|p| serde_json::from_str(&p).ok());
    let mut stmt = conn.prepare(SEEN)?;
    let mut rows = stmt.query(params![since_us])?;
    while let Some(r) = rows.next()? {
        let transport: Option<String> = r.get(1)?;
        let events: Option<String> = r.get(4)?;
        let events: Vec<String> = events.map(|e| e.lines().map(str::to_string).collect()).unwrap_or_default();
        out.seen.push(SeenRow {
            session_id: r.get(0)?,
            transport: match transport.as_deref() {
                Some(agent_console_conventions::hook::TRANSPORT_COMMAND) => Some(Transport::Binary),
                Some(agent_console_conventions::hook::TRANSPORT_HTTP) => Some(Transport::Http),
                _ => None,
            },
            legacy: r.get::<_, Option<bool>>(2)?.unwrap_or(false),
            openclaw: r.get::<_, Option<bool>>(3)?.unwrap_or(false),
            ended: events.iter().any(|e| e == "SessionEnd"),
            events,
            agent_id: r.get(5)?,
        });
    }
    Ok(out)
}

/// A session's commands, oldest first (`GET /api/sessions/{id}/commands`).
pub const SESSION_COMMANDS_SQL: &str = "
    SELECT command_id, session_id, kind, message, reason, tool_use_id, hard, for_session, issued_by, status, result,
           delivered_via, accepted_at, delivered_at, observed_at, ended_at
    FROM control_commands WHERE session_id = $1::VARCHAR ORDER BY accepted_at, command_id LIMIT $2::BIGINT";

/// Approvals, newest first (`GET /api/approvals`): $1 session or NULL, $2 status or NULL, $3 limit.
pub const APPROVALS_SQL: &str = "
    SELECT approval_id, session_id, tool_use_id, tool_name, tool_input, rule, status, default_decision AS \"default\",
           requested_at, expires_at, answered_at, answered_by, answer_reason AS reason, command_id
    FROM control_approvals
    WHERE ($1::VARCHAR IS NULL OR session_id = $1::VARCHAR) AND ($2::VARCHAR IS NULL OR status = $2::VARCHAR)
    ORDER BY requested_at DESC LIMIT $3::BIGINT";
