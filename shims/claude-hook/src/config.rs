//! Shim configuration: `AGENT_CONSOLE_*` environment variables first, then a config file (Claude
//! Code strips `OTEL_*` from hook processes, so a file is the dependable place). The file is
//! `key = "value"` lines (TOML subset, parsed by hand) or a JSON object, at
//! `$AGENT_CONSOLE_HOOK_CONFIG`, else `~/.config/agent-console/hook.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::translate::{Options, DEFAULT_MAX_PAYLOAD_BYTES};

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4318";
pub const DEFAULT_TIMEOUT_MS: u64 = 1000;
pub const DEFAULT_MAX_SPOOL_BYTES: u64 = 4 * 1024 * 1024;
/// How long a held hook call waits at most (`install` writes a 86,400 s `timeout` on the hooks
/// that can hold; the hook answers its fallback before Claude Code would give up and fail open).
pub const DEFAULT_HOLD_SECS: u64 = 86_100;
/// One long-poll of a held call.
pub const DEFAULT_POLL_MS: u64 = 25_000;

/// Everything the shim reads at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Collector base URL (`http://host:port` or `https://host[:port]`, optional path prefix).
    pub endpoint: String,
    pub token: Option<String>,
    /// PEM file of a private CA trusted for an `https://` endpoint (besides the Mozilla roots).
    pub ca_file: Option<PathBuf>,
    pub task_id: Option<String>,
    pub agent_name: Option<String>,
    /// Hard deadline of the whole run.
    pub timeout: Duration,
    pub spool_dir: PathBuf,
    pub max_payload_bytes: usize,
    pub max_spool_bytes: u64,
    /// Longest hold of one hook call (pause, approval), then the fallback answer.
    pub hold: Duration,
    /// One long-poll while held.
    pub poll: Duration,
}

/// (config-file key, environment variable).
const KEYS: &[(&str, &str)] = &[
    ("endpoint", "AGENT_CONSOLE_ENDPOINT"),
    ("token", "AGENT_CONSOLE_TOKEN"),
    ("ca_file", "AGENT_CONSOLE_CA_FILE"),
    ("task_id", "AGENT_CONSOLE_TASK_ID"),
    ("agent_name", "AGENT_CONSOLE_AGENT_NAME"),
    ("timeout_ms", "AGENT_CONSOLE_HOOK_TIMEOUT_MS"),
    ("spool_dir", "AGENT_CONSOLE_SPOOL_DIR"),
    ("max_payload_bytes", "AGENT_CONSOLE_MAX_PAYLOAD_BYTES"),
    ("max_spool_bytes", "AGENT_CONSOLE_MAX_SPOOL_BYTES"),
    ("hold_secs", "AGENT_CONSOLE_HOOK_HOLD_SECS"),
    ("poll_ms", "AGENT_CONSOLE_HOOK_POLL_MS"),
];

impl Config {
    /// Resolve from an environment lookup and a home directory (injected for tests).
    pub fn load(env: impl Fn(&str) -> Option<String>, home: Option<&Path>) -> Config {
        let file_path = env("AGENT_CONSOLE_HOOK_CONFIG")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| home.map(|h| h.join(".config/agent-console/hook.toml")));
        let file = file_path.and_then(|p| std::fs::read_to_string(p).ok()).map(|t| parse_file(&t)).unwrap_or_default();
        let get = |key: &str| -> Option<String> {
            let var = KEYS.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)?;
            env(var).filter(|v| !v.is_empty()).or_else(|| file.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()))
        };
        let num = |key: &str| get(key).and_then(|v| v.trim().parse::<u64>().ok());
        let spool_dir = get("spool_dir").map(PathBuf::from).unwrap_or_else(|| match home {
            Some(h) => h.join(".cache/agent-console/spool"),
            None => std::env::temp_dir().join("agent-console-spool"),
        });
        Config {
            endpoint: get("endpoint").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()),
            token: get("token"),
            ca_file: get("ca_file").map(PathBuf::from),
            task_id: get("task_id"),
            agent_name: get("agent_name"),
            timeout: Duration::from_millis(num("timeout_ms").filter(|t| *t > 0).unwrap_or(DEFAULT_TIMEOUT_MS)),
            spool_dir,
            max_payload_bytes: num("max_payload_bytes").map(|n| n as usize).unwrap_or(DEFAULT_MAX_PAYLOAD_BYTES),
            max_spool_bytes: num("max_spool_bytes").unwrap_or(DEFAULT_MAX_SPOOL_BYTES),
            hold: Duration::from_secs(num("hold_secs").filter(|t| *t > 0).unwrap_or(DEFAULT_HOLD_SECS)),
            poll: Duration::from_millis(num("poll_ms").filter(|t| *t >= 100).unwrap_or(DEFAULT_POLL_MS)),
        }
    }

    pub fn options(&self) -> Options {
        Options {
            agent_name: self.agent_name.clone(),
            task_id: self.task_id.clone(),
            max_payload_bytes: self.max_payload_bytes,
            ..Options::default()
        }
    }
}

/// `key = "value"` / `key = 123` lines (comments and `[sections]` ignored), or a JSON object.
pub fn parse_file(text: &str) -> Vec<(String, String)> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(trimmed) else {
            return Vec::new();
        };
        return map
            .into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k, s)),
                serde_json::Value::Number(n) => Some((k, n.to_string())),
                _ => None,
            })
            .collect();
    }
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
                return None;
            }
            let (k, v) = line.split_once('=')?;
            let v = v.trim();
            let v = if let Some(rest) = v.strip_prefix('"') {
                // A quoted string: up to the closing quote (no escapes needed for URLs and paths).
                rest.split_once('"').map(|(inner, _)| inner)?
            } else {
                v.split('#').next().unwrap_or("").trim()
            };
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn env_wins_over_file_and_defaults_fill_the_rest() {
        let dir = std::env::temp_dir().join(format!("ac-hook-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("hook.toml");
        std::fs::write(
            &file,
            "# comment\n[hook]\nendpoint = \"http://10.0.0.1:4318\" # trailing\ntoken = \"s3cret\"\ntimeout_ms = 250\n",
        )
        .expect("write");
        let env: HashMap<&str, String> = [
            ("AGENT_CONSOLE_HOOK_CONFIG", file.display().to_string()),
            ("AGENT_CONSOLE_TOKEN", "from-env".to_string()),
        ]
        .into();
        let c = Config::load(|k| env.get(k).cloned(), Some(Path::new("/home/u")));
        assert_eq!(c.endpoint, "http://10.0.0.1:4318");
        assert_eq!(c.token.as_deref(), Some("from-env"));
        assert_eq!(c.timeout, Duration::from_millis(250));
        assert_eq!(c.spool_dir, PathBuf::from("/home/u/.cache/agent-console/spool"));
        assert_eq!(c.max_payload_bytes, DEFAULT_MAX_PAYLOAD_BYTES);
        let d = Config::load(|_| None, None);
        assert_eq!((d.endpoint.as_str(), d.timeout), (DEFAULT_ENDPOINT, Duration::from_millis(DEFAULT_TIMEOUT_MS)));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn json_config() {
        let kv = parse_file(r#"{"endpoint":"http://h:1","timeout_ms":300,"x":[1]}"#);
        assert_eq!(kv, vec![("endpoint".into(), "http://h:1".into()), ("timeout_ms".into(), "300".into())]);
    }
}
