//! The approval policy: which tool calls are held until an operator approves them. A rule matches
//! a PreToolUse by tool name (a regex that must match the whole name), by a regex searched in the
//! tool input (a Bash `command`, else the input as JSON text), and optionally by agent or session;
//! the first matching rule wins. A held call that nobody answers in time gets the rule's default
//! (deny unless configured). Rules come from a TOML file (`--approval-policy`, read-only) and from
//! `PUT /api/approvals/policy` (stored in `control_policy`); the API may also set the defaults.
//!
//! ```toml
//! timeout_secs = 300          # how long a held call waits for an answer
//! default = "deny"            # what a timeout answers: deny | allow
//! [[rules]]
//! name = "risky-bash"
//! tool = "Bash"
//! input = "rm -rf|git push"
//! # agent = "claude-code"   session = "..."   timeout_secs = 60   default = "deny"
//! ```

use std::path::Path;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Default wait for an answer.
pub const DEFAULT_TIMEOUT_SECS: u64 = 300;
/// Most rules a policy may hold.
pub const MAX_RULES: usize = 256;
/// Tool input searched by a rule's regex (bytes from the start).
pub const MAX_INPUT_SCAN: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read approval policy {path}: {message}")]
    Read { path: String, message: String },
    #[error("invalid approval policy: {0}")]
    Invalid(String),
}

/// A rule as written (TOML or JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// A policy as written: defaults and rules.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub spec: RuleSpec,
    /// `config` (the file) or `api`.
    pub source: &'static str,
    tool: Option<Regex>,
    input: Option<Regex>,
}

/// The policy in force: the file's rules first, then the API's.
#[derive(Debug, Clone)]
pub struct Policy {
    pub timeout_secs: u64,
    pub default_allow: bool,
    pub rules: Vec<Rule>,
    /// The parts, kept to rebuild when one changes.
    pub file: PolicySpec,
    pub api: PolicySpec,
}

/// What a matching rule says.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub rule: String,
    pub timeout_secs: u64,
    pub default_allow: bool,
}

fn parse_default(d: Option<&str>, what: &str) -> Result<Option<bool>, PolicyError> {
    match d {
        None => Ok(None),
        Some("deny") => Ok(Some(false)),
        Some("allow") => Ok(Some(true)),
        Some(other) => {
            Err(PolicyError::Invalid(format!("{what}: default must be \"deny\" or \"allow\", not {other:?}")))
        }
    }
}

fn regex(pattern: &str, anchored: bool, what: &str) -> Result<Regex, PolicyError> {
    let p = if anchored { format!("^(?:{pattern})$") } else { pattern.to_string() };
    RegexBuilder::new(&p)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|e| PolicyError::Invalid(format!("{what}: {e}")))
}

fn compile(spec: &RuleSpec, source: &'static str) -> Result<Rule, PolicyError> {
    let what = format!("rule {:?}", spec.name);
    if spec.name.trim().is_empty() || spec.name.len() > 128 {
        return Err(PolicyError::Invalid("every rule needs a name (at most 128 bytes)".into()));
    }
    if spec.tool.is_none() && spec.input.is_none() {
        return Err(PolicyError::Invalid(format!("{what}: give a tool, an input pattern or both")));
    }
    parse_default(spec.default.as_deref(), &what)?;
    if spec.timeout_secs == Some(0) {
        return Err(PolicyError::Invalid(format!("{what}: timeout_secs must be positive")));
    }
    Ok(Rule {
        spec: spec.clone(),
        source,
        tool: spec.tool.as_deref().map(|t| regex(t, true, &format!("{what} tool"))).transpose()?,
        input: spec.input.as_deref().map(|t| regex(t, false, &format!("{what} input"))).transpose()?,
    })
}

/// The text a rule's input regex searches: a Bash command as is, anything else as JSON.
pub fn input_text(tool_input: &Value) -> String {
    let s = match tool_input.get("command").and_then(Value::as_str) {
        Some(c) => c.to_string(),
        None => tool_input.to_string(),
    };
    let (cut, _) = agent_console_hook::translate::truncate(&s, MAX_INPUT_SCAN);
    cut.to_string()
}

impl Policy {
    /// Build from the file's part and the API's part; names must be unique.
    pub fn build(file: PolicySpec, api: PolicySpec) -> Result<Policy, PolicyError> {
        let mut rules = Vec::new();
        for r in &file.rules {
            rules.push(compile(r, "config")?);
        }
        for r in &api.rules {
            rules.push(compile(r, "api")?);
        }
        if rules.len() > MAX_RULES {
            return Err(PolicyError::Invalid(format!("at most {MAX_RULES} rules")));
        }
        let mut names: Vec<&str> = rules.iter().map(|r| r.spec.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(PolicyError::Invalid(format!(
                "two rules are named {:?} (config-file rules cannot be replaced over the API)",
                w[0]
            )));
        }
        let default_allow =
            parse_default(api.default.as_deref().or(file.default.as_deref()), "policy")?.unwrap_or(false);
        let timeout_secs = api.timeout_secs.or(file.timeout_secs).unwrap_or(DEFAULT_TIMEOUT_SECS).max(1);
        Ok(Policy { timeout_secs, default_allow, rules, file, api })
    }

    /// Read the TOML file (`--approval-policy`).
    pub fn file_spec(path: &Path) -> Result<PolicySpec, PolicyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| PolicyError::Read { path: path.display().to_string(), message: e.to_string() })?;
        toml::from_str(&text)
            .map_err(|e| PolicyError::Read { path: path.display().to_string(), message: e.to_string() })
    }

    /// The first rule holding this call, if any.
    pub fn matching(
        &self,
        tool: Option<&str>,
        tool_input: &Value,
        agent: Option<&str>,
        session: &str,
    ) -> Option<Match> {
        let mut text: Option<String> = None;
        for r in &self.rules {
            if r.spec.session.as_deref().is_some_and(|s| s != session) {
                continue;
            }
            if r.spec.agent.as_deref().is_some_and(|a| Some(a) != agent) {
                continue;
            }
            if let Some(t) = &r.tool {
                if !tool.is_some_and(|name| t.is_match(name)) {
                    continue;
                }
            }
            if let Some(re) = &r.input {
                let hay = text.get_or_insert_with(|| input_text(tool_input));
                if !re.is_match(hay) {
                    continue;
                }
            }
            let default_allow =
                parse_default(r.spec.default.as_deref(), "").ok().flatten().unwrap_or(self.default_allow);
            return Some(Match {
                rule: r.spec.name.clone(),
                timeout_secs: r.spec.timeout_secs.unwrap_or(self.timeout_secs),
                default_allow,
            });
        }
        None
    }

    pub fn to_json(&self) -> Value {
        let rules: Vec<Value> = self
            .rules
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(&r.spec).unwrap_or_else(|_| json!({}));
                if let Some(o) = v.as_object_mut() {
                    o.insert("source".into(), json!(r.source));
                }
                v
            })
            .collect();
        json!({
            "timeout_secs": self.timeout_secs,
            "default": if self.default_allow { "allow" } else { "deny" },
            "rules": rules,
        })
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            default_allow: false,
            rules: Vec::new(),
            file: PolicySpec::default(),
            api: PolicySpec::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, tool: Option<&str>, input: Option<&str>) -> RuleSpec {
        RuleSpec {
            name: name.into(),
            tool: tool.map(Into::into),
            input: input.map(Into::into),
            agent: None,
            session: None,
            timeout_secs: None,
            default: None,
        }
    }

    #[test]
    fn rules_match_tool_input_agent_and_session() {
        let file: PolicySpec = toml::from_str(
            "timeout_secs = 60\n[[rules]]\nname = \"risky-bash\"\ntool = \"Bash\"\ninput = \"rm -rf|git push\"\n",
        )
        .expect("toml");
        let mut api = PolicySpec { default: Some("allow".into()), ..Default::default() };
        api.rules.push(RuleSpec { agent: Some("reviewer".into()), ..spec("mcp", Some("mcp__.*"), None) });
        let p = Policy::build(file, api).expect("policy");
        assert_eq!((p.timeout_secs, p.default_allow), (60, true));
        let bash = |c: &str| json!({"command": c, "description": "x"});
        let m = p.matching(Some("Bash"), &bash("git push origin main"), None, "s").expect("match");
        assert_eq!((m.rule.as_str(), m.timeout_secs, m.default_allow), ("risky-bash", 60, true));
        assert!(p.matching(Some("Bash"), &bash("ls -la"), None, "s").is_none());
        assert!(p.matching(Some("Bashful"), &bash("rm -rf /"), None, "s").is_none(), "tool name matches whole");
        assert!(p.matching(Some("mcp__db__drop"), &json!({}), Some("other"), "s").is_none());
        assert_eq!(
            p.matching(Some("mcp__db__drop"), &json!({}), Some("reviewer"), "s").map(|m| m.rule),
            Some("mcp".into())
        );
        let j = p.to_json();
        assert_eq!(j["rules"][0]["source"], "config");
        assert_eq!(j["rules"][1]["source"], "api");
    }

    #[test]
    fn bad_policies_are_refused_with_the_rule_named() {
        let bad = PolicySpec { rules: vec![spec("x", Some("("), None)], ..Default::default() };
        let e = Policy::build(PolicySpec::default(), bad).expect_err("bad regex").to_string();
        assert!(e.contains("rule \"x\""), "{e}");
        let dup = PolicySpec { rules: vec![spec("x", Some("A"), None)], ..Default::default() };
        assert!(Policy::build(dup.clone(), dup).is_err());
        let empty = PolicySpec { rules: vec![spec("y", None, None)], ..Default::default() };
        assert!(Policy::build(PolicySpec::default(), empty).is_err());
        let d = PolicySpec { default: Some("maybe".into()), ..Default::default() };
        assert!(Policy::build(d, PolicySpec::default()).is_err());
        assert!(serde_json::from_value::<PolicySpec>(json!({"rules": [], "oops": 1})).is_err());
    }
}
