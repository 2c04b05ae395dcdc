//! Control settings (flattened into `serve`; each flag has its `AGENT_CONSOLE_*` variable and may
//! come from the TOML config file under the same name).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ControlConfig;

/// Named control tokens: `alice=tok1,bob=tok2` on the command line / environment, or a TOML table
/// `control_tokens = { alice = "tok1" }`. The name is what the audit trail records as who acted.
#[derive(Clone, Default, PartialEq)]
pub struct NamedTokens(pub Vec<(String, String)>);

impl std::fmt::Debug for NamedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_tuple("NamedTokens").field(&names).finish()
    }
}

impl std::str::FromStr for NamedTokens {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut v = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, token) = part.split_once('=').ok_or_else(|| format!("{part:?} is not name=token"))?;
            let (name, token) = (name.trim(), token.trim());
            if name.is_empty() || token.is_empty() {
                return Err(format!("{part:?}: name and token must not be empty"));
            }
            v.push((name.to_string(), token.to_string()));
        }
        Ok(NamedTokens(v))
    }
}

impl Serialize for NamedTokens {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for NamedTokens {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Map(std::collections::BTreeMap<String, String>),
            Text(String),
        }
        match Form::deserialize(d)? {
            Form::Map(m) => Ok(NamedTokens(m.into_iter().filter(|(_, t)| !t.is_empty()).collect())),
            Form::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct ControlArgs {
    /// Approval rules (TOML: timeout_secs, default, [[rules]] name/tool/input/agent/session).
    #[arg(long, env = "AGENT_CONSOLE_APPROVAL_POLICY")]
    pub approval_policy: Option<PathBuf>,
    /// More control tokens, by name (`alice=tok1,bob=tok2`; TOML: `control_tokens = { alice = "tok1" }`).
    /// `--control-token` is named `control`. The audit trail records the name.
    #[arg(long, env = "AGENT_CONSOLE_CONTROL_TOKENS", hide_env_values = true)]
    pub control_tokens: Option<NamedTokens>,
    /// Longest hold of an `http` hook call that does not send `x-agent-console-hold-secs` (keep it
    /// below the hook's `timeout`, 600 s by default; UserPromptSubmit: at most 25 s).
    #[arg(long, env = "AGENT_CONSOLE_CONTROL_HTTP_HOLD_SECS", default_value_t = 570)]
    pub control_http_hold_secs: u64,
    /// Injected messages not delivered within this time expire.
    #[arg(long, env = "AGENT_CONSOLE_CONTROL_INJECT_TTL_SECS", default_value_t = 86_400)]
    pub control_inject_ttl_secs: u64,
}

impl Default for ControlArgs {
    fn default() -> Self {
        ControlArgs {
            approval_policy: None,
            control_tokens: None,
            control_http_hold_secs: 570,
            control_inject_ttl_secs: 86_400,
        }
    }
}

impl ControlArgs {
    /// The control plane's settings; `signing_key` is the ingest token (hook answers are signed).
    pub fn config(&self, signing_key: Option<&str>) -> Result<ControlConfig, super::policy::PolicyError> {
        let policy_file = match &self.approval_policy {
            Some(p) => super::policy::Policy::file_spec(p)?,
            None => Default::default(),
        };
        Ok(ControlConfig {
            signing_key: signing_key.unwrap_or("").as_bytes().to_vec(),
            http_hold: Duration::from_secs(self.control_http_hold_secs.max(1)),
            http_hold_prompt: Duration::from_secs(self.control_http_hold_secs.clamp(1, 25)),
            inject_ttl: Duration::from_secs(self.control_inject_ttl_secs.max(1)),
            policy_file,
            ..ControlConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_tokens_from_text_and_table() {
        let t: NamedTokens = "alice=a1, bob = b2".parse().expect("parse");
        assert_eq!(t.0, vec![("alice".into(), "a1".into()), ("bob".into(), "b2".into())]);
        assert!("alice".parse::<NamedTokens>().is_err());
        let v: NamedTokens = serde_json::from_value(serde_json::json!({"carol": "c3"})).expect("map");
        assert_eq!(v.0, vec![("carol".into(), "c3".into())]);
        let v: NamedTokens = serde_json::from_value(serde_json::json!("dave=d4")).expect("text");
        assert_eq!(v.0, vec![("dave".into(), "d4".into())]);
        assert!(!format!("{v:?}").contains("d4"));
    }
}
