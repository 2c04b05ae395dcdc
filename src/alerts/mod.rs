//! Alerts (issue 13 part 3): rules that watch what the pipeline commits and notify or act.
//!
//! - `mod.rs`: the rule spec (TOML alerts file and `POST /api/alerts/rules`), validated.
//! - `engine.rs`: the evaluator, run by the pipeline's `alerts` stage on every record (after
//!   pricing, sessions and tasks) and on the 1 s tick, on the pipeline's clock. Incremental:
//!   per rule and scope it keeps running sums (budgets), sliding windows (runaway spend, error
//!   rate) and since-times (stuck, waiting, source silent), never re-scanning tables. A scope
//!   moves ok -> pending -> firing -> resolved with the rule's `for` and `cooldown`, so it never
//!   flaps or fires again before it resolved. It returns events; it never blocks.
//! - `seed.rs`: at start the evaluator is seeded from the store (budget sums, windows, open and
//!   cooling alerts), so a restart neither forgets spend nor fires an alert twice.
//! - `runner.rs`: a tokio task fed by a bounded channel (`try_send` from the pipeline): stores
//!   firings and resolutions (`alerts`, via `Store::apply`), publishes `alert` live messages,
//!   issues the rule's action through the control plane (an audited command by `rule:<name>`),
//!   queues webhooks and keeps the firing gauges for `/metrics`.
//! - `webhook.rs`: a bounded delivery queue, retries with backoff, HMAC-SHA256 signatures,
//!   generic JSON or a Slack body; every attempt is an `alert_deliveries` row.
//! - `api.rs`: `/api/alerts/rules` (writes under the control token) and `/api/alerts`.

pub mod api;
pub mod engine;
pub mod runner;
pub mod seed;
pub mod webhook;

use serde::{Deserialize, Serialize};

/// Alert errors.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("{0}")]
    Invalid(String),
    #[error("no alert rule {0:?}")]
    NotFound(String),
    #[error("rule {0:?} comes from the alerts file; change it there")]
    FromFile(String),
    #[error("cannot read the alerts file {path}: {message}")]
    File { path: String, message: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Cost above `threshold` USD within the sliding `window_secs`.
    RunawaySpend,
    /// Cumulative cost reaching each tier of `threshold` USD.
    Budget,
    /// Failed model / tool calls above `threshold` percent over `window_secs`, at least `min_count` calls.
    ErrorRate,
    /// A session stuck for `after_secs`.
    Stuck,
    /// A session waiting for a human for `after_secs`.
    Waiting,
    /// A source (service) that was reporting silent for `after_secs`.
    SourceSilent,
}

/// What a rule's values are summed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    #[default]
    Session,
    Agent,
    Task,
    /// Everything together.
    All,
    /// Everything, per calendar day (UTC).
    Day,
}

/// What a firing rule does through the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Pause the session (sessions of the scope for agent / task scopes).
    Pause,
    /// Kill the session.
    Kill,
    /// Deny the tool call the session has waiting for approval, or with none waiting its next
    /// tool call (Claude Code: the next `PreToolUse` is answered `deny` with the alert's message).
    Deny,
    /// Pause every session of the agent.
    PauseAgent,
    /// Pause every session of the task.
    PauseTask,
}

/// Webhook body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Json,
    Slack,
}

fn default_true() -> bool {
    true
}

fn default_cooldown() -> u64 {
    300
}

/// One rule (TOML `[[rule]]` in the alerts file, or the JSON body of the API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    pub kind: Kind,
    #[serde(default)]
    pub scope: Scope,
    /// USD (spend, budget) or percent (error rate); unused by the time rules.
    #[serde(default)]
    pub threshold: f64,
    /// Sliding window (runaway spend, error rate).
    #[serde(default)]
    pub window_secs: u64,
    /// Fewest calls in the window before an error rate counts.
    #[serde(default)]
    pub min_count: u64,
    /// How long stuck / waiting / silent before it counts.
    #[serde(default)]
    pub after_secs: u64,
    /// Budget tiers as fractions of `threshold` (default 0.8 and 1.0).
    #[serde(default)]
    pub tiers: Vec<f64>,
    /// The condition must hold this long before the alert fires (pending meanwhile).
    #[serde(default, rename = "for_secs")]
    pub for_secs: u64,
    /// After resolving, the same scope does not fire again for this long.
    #[serde(default = "default_cooldown")]
    pub cooldown_secs: u64,
    #[serde(default)]
    pub action: Option<Action>,
    #[serde(default)]
    pub webhook: Option<String>,
    #[serde(default)]
    pub webhook_format: Format,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

/// Most rules (file and API together).
pub const MAX_RULES: usize = 10_000;

impl RuleSpec {
    /// Check the rule; fill defaults (budget tiers).
    pub fn validate(mut self) -> Result<Self, AlertError> {
        let bad = |m: String| Err(AlertError::Invalid(format!("rule {:?}: {m}", self.name)));
        if self.name.is_empty()
            || self.name.len() > 100
            || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(AlertError::Invalid(format!("rule name {:?}: 1 to 100 of [A-Za-z0-9-_.]", self.name)));
        }
        match self.kind {
            Kind::RunawaySpend | Kind::Budget | Kind::ErrorRate
                if !(self.threshold > 0.0 && self.threshold.is_finite()) =>
            {
                return bad("threshold must be > 0".into())
            }
            Kind::RunawaySpend | Kind::ErrorRate if self.window_secs == 0 => {
                return bad("window_secs must be > 0".into())
            }
            Kind::Stuck | Kind::Waiting | Kind::SourceSilent if self.after_secs == 0 => {
                return bad("after_secs must be > 0".into())
            }
            Kind::ErrorRate if self.threshold > 100.0 => return bad("an error rate threshold is a percent".into()),
            _ => {}
        }
        if self.window_secs > 31 * 86_400 || self.after_secs > 31 * 86_400 || self.for_secs > 86_400 {
            return bad("windows and durations are at most 31 days (for_secs: 1 day)".into());
        }
        if matches!(self.kind, Kind::Stuck | Kind::Waiting) && self.scope != Scope::Session {
            return bad("stuck and waiting rules are per session".into());
        }
        if self.kind == Kind::Budget {
            if self.tiers.is_empty() {
                self.tiers = vec![0.8, 1.0];
            }
            if self.tiers.len() > 8 || self.tiers.iter().any(|t| !(*t > 0.0 && *t <= 10.0)) {
                return bad("tiers are up to 8 fractions in (0, 10]".into());
            }
            self.tiers.sort_by(f64::total_cmp);
            self.tiers.dedup();
        }
        match (self.action, self.scope) {
            (Some(Action::PauseTask), s) if s != Scope::Task && s != Scope::Session => {
                return bad("pause_task needs a task or session scope".into())
            }
            (Some(Action::PauseAgent), s) if s != Scope::Agent && s != Scope::Session => {
                return bad("pause_agent needs an agent or session scope".into())
            }
            (Some(Action::Pause | Action::Kill | Action::Deny), Scope::All | Scope::Day) => {
                return bad("session actions need a session, agent or task scope".into())
            }
            _ => {}
        }
        if let Some(u) = &self.webhook {
            if !(u.starts_with("http://") || u.starts_with("https://")) || u.len() > 2000 {
                return bad("webhook must be an http(s) URL".into());
            }
        }
        Ok(self)
    }
}

/// The alerts file: `[[rule]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rule: Vec<RuleSpec>,
}

/// Read and validate the alerts file.
pub fn load_file(path: &std::path::Path) -> Result<Vec<RuleSpec>, AlertError> {
    let err = |m: String| AlertError::File { path: path.display().to_string(), message: m };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    parse_file(&text).map_err(|e| err(e.to_string()))
}

pub fn parse_file(text: &str) -> Result<Vec<RuleSpec>, AlertError> {
    let f: RulesFile = toml::from_str(text).map_err(|e| AlertError::Invalid(e.to_string()))?;
    if f.rule.len() > MAX_RULES {
        return Err(AlertError::Invalid(format!("at most {MAX_RULES} rules")));
    }
    let mut out: Vec<RuleSpec> = Vec::new();
    for r in f.rule {
        let r = r.validate()?;
        if out.iter().any(|o| o.name == r.name) {
            return Err(AlertError::Invalid(format!("rule {:?} is defined twice", r.name)));
        }
        out.push(r);
    }
    Ok(out)
}

/// Settings.
#[derive(Debug, Clone, Default)]
pub struct AlertConfig {
    /// Rules from the alerts file.
    pub file_rules: Vec<RuleSpec>,
    /// HMAC-SHA256 key of webhook signatures (`X-Agent-Console-Signature: sha256=<hex>`).
    pub webhook_secret: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alerts_file() {
        let rules = parse_file(
            r#"
            [[rule]]
            name = "session-budget"
            kind = "budget"
            scope = "session"
            threshold = 5.0
            action = "pause"
            webhook = "http://127.0.0.1:9/hook"

            [[rule]]
            name = "burn"
            kind = "runaway_spend"
            scope = "all"
            threshold = 20.0
            window_secs = 600
            "#,
        )
        .expect("rules");
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].tiers, vec![0.8, 1.0]);
        assert_eq!(rules[0].cooldown_secs, 300);
        for bad in [
            "[[rule]]\nname = \"x\"\nkind = \"budget\"\n",
            "[[rule]]\nname = \"x\"\nkind = \"runaway_spend\"\nthreshold = 1.0\n",
            "[[rule]]\nname = \"x\"\nkind = \"stuck\"\nafter_secs = 60\nscope = \"agent\"\n",
            "[[rule]]\nname = \"x y\"\nkind = \"stuck\"\nafter_secs = 60\n",
            "[[rule]]\nname = \"x\"\nkind = \"budget\"\nthreshold = 1.0\nscope = \"all\"\naction = \"pause\"\n",
            "[[rule]]\nname = \"x\"\nkind = \"nope\"\n",
            "[[rule]]\nname = \"x\"\nkind = \"stuck\"\nafter_secs = 60\n[[rule]]\nname = \"x\"\nkind = \"stuck\"\nafter_secs = 9\n",
        ] {
            assert!(parse_file(bad).is_err(), "{bad}");
        }
    }
}
