//! Claude Code `settings.json` merging: `install` adds one `command` hook per event pointing at this
//! binary, keeping the user's hooks and every other key; `uninstall` removes only ours (a command
//! whose program ends in `agent-console-hook`). Hooks that can hold the agent (a pause, an approval)
//! get a long `timeout` (Claude Code fails open when a hook times out), and SessionStart and Stop
//! also get the `--inbox` waiter (`asyncRewake`: wakes an idle interactive session with a queued
//! message). Pure on `serde_json::Value`, plus an atomic file write.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// The events we install, in order, and whether Claude Code matches them on something (we then
/// write matcher `*`; events without a matcher get none).
pub const EVENTS: &[(&str, bool)] = &[
    ("SessionStart", true),
    ("UserPromptSubmit", false),
    ("PreToolUse", true),
    ("PostToolUse", true),
    ("PostToolUseFailure", true),
    ("PostToolBatch", false),
    ("Notification", true),
    ("Stop", false),
    ("SubagentStart", true),
    ("SubagentStop", true),
    ("PreCompact", true),
    ("PostCompact", true),
    ("SessionEnd", true),
];

/// How our hook commands are recognised.
pub const BINARY_NAME: &str = "agent-console-hook";

/// Default `timeout` (seconds) of hooks that never hold; the shim's own deadline is far shorter.
pub const DEFAULT_TIMEOUT_SECS: u64 = 5;
/// Default `timeout` of hooks that can hold (and of the inbox waiter): a day.
pub const DEFAULT_HOLD_TIMEOUT_SECS: u64 = 86_400;
/// Events where control can hold or answer, so their hook needs the long timeout.
pub const HOLD_EVENTS: &[&str] = &["UserPromptSubmit", "PreToolUse", "PostToolUse", "PostToolBatch", "Stop"];
/// Events that start the `--inbox` waiter.
pub const INBOX_EVENTS: &[&str] = &["SessionStart", "Stop"];

/// Why settings could not be read, merged or written (hand-written `Display`: no `thiserror` dep).
#[derive(Debug)]
pub enum SettingsError {
    Io(String),
    Invalid(String),
}

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettingsError::Io(m) | SettingsError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for SettingsError {}

/// The program of a command line (quoted or up to the first space).
fn program(command: &str) -> &str {
    let c = command.trim();
    for q in ['"', '\''] {
        if let Some(rest) = c.strip_prefix(q) {
            return rest.split(q).next().unwrap_or("");
        }
    }
    c.split_whitespace().next().unwrap_or("")
}

fn is_ours(handler: &Value) -> bool {
    handler.get("command").and_then(Value::as_str).is_some_and(|c| program(c).ends_with(BINARY_NAME))
}

fn quoted(exe: &str) -> String {
    if exe.contains(char::is_whitespace) {
        format!("\"{exe}\"")
    } else {
        exe.to_string()
    }
}

/// Our handlers for one event.
fn our_handlers(event: &str, exe: &str, timeout_secs: u64, hold_timeout_secs: u64) -> Vec<Value> {
    let exe = quoted(exe);
    let mut v = Vec::new();
    if HOLD_EVENTS.contains(&event) {
        // The hook answers its fallback before Claude Code's timeout would fail open.
        let command = if hold_timeout_secs == DEFAULT_HOLD_TIMEOUT_SECS {
            exe.clone()
        } else {
            format!("{exe} --hold-secs {}", hold_timeout_secs - (hold_timeout_secs / 10).min(300))
        };
        v.push(json!({ "type": "command", "command": command, "timeout": hold_timeout_secs }));
    } else {
        v.push(json!({ "type": "command", "command": exe.clone(), "timeout": timeout_secs }));
    }
    if INBOX_EVENTS.contains(&event) {
        v.push(json!({ "type": "command", "command": format!("{exe} --inbox"), "asyncRewake": true,
                       "timeout": hold_timeout_secs }));
    }
    v
}

fn hooks_map(settings: &mut Value) -> Result<&mut Map<String, Value>, SettingsError> {
    let root =
        settings.as_object_mut().ok_or_else(|| SettingsError::Invalid("settings is not a JSON object".into()))?;
    let hooks = root.entry("hooks").or_insert_with(|| Value::Object(Map::new()));
    hooks.as_object_mut().ok_or_else(|| SettingsError::Invalid("settings \"hooks\" is not an object".into()))
}

/// Add our entries (idempotent: entries of ours are replaced, the user's are kept in place).
pub fn install(
    settings: &mut Value,
    command: &str,
    timeout_secs: u64,
    hold_timeout_secs: u64,
) -> Result<(), SettingsError> {
    let hooks = hooks_map(settings)?;
    for (event, has_matcher) in EVENTS {
        let groups = hooks.entry(*event).or_insert_with(|| Value::Array(Vec::new()));
        let groups = groups
            .as_array_mut()
            .ok_or_else(|| SettingsError::Invalid(format!("settings hooks.{event} is not an array")))?;
        groups.retain_mut(|group| {
            let Some(list) = group.get_mut("hooks").and_then(Value::as_array_mut) else { return true };
            let n = list.len();
            list.retain(|h| !is_ours(h));
            list.len() == n || !list.is_empty()
        });
        let mut group = Map::new();
        if *has_matcher {
            group.insert("matcher".into(), Value::String("*".into()));
        }
        group.insert("hooks".into(), Value::Array(our_handlers(event, command, timeout_secs, hold_timeout_secs)));
        groups.push(Value::Object(group));
    }
    Ok(())
}

/// Remove our entries only; groups and events we empty are removed, and `hooks` when it is empty.
pub fn uninstall(settings: &mut Value) -> Result<(), SettingsError> {
    let Some(root) = settings.as_object_mut() else {
        return Err(SettingsError::Invalid("settings is not a JSON object".into()));
    };
    let Some(hooks) = root.get_mut("hooks").and_then(Value::as_object_mut) else { return Ok(()) };
    let mut removed_any = false;
    let mut emptied = Vec::new();
    for (event, groups) in hooks.iter_mut() {
        let Some(groups) = groups.as_array_mut() else { continue };
        let before = groups.len();
        let mut changed = false;
        groups.retain_mut(|group| {
            let Some(list) = group.get_mut("hooks").and_then(Value::as_array_mut) else { return true };
            let n = list.len();
            list.retain(|h| !is_ours(h));
            if list.len() != n {
                changed = true;
                return !list.is_empty();
            }
            true
        });
        if changed {
            removed_any = true;
            if groups.is_empty() && before > 0 {
                emptied.push(event.clone());
            }
        }
    }
    for e in emptied {
        hooks.remove(&e);
    }
    if removed_any && hooks.is_empty() {
        root.remove("hooks");
    }
    Ok(())
}

/// `DIR/.claude/settings.json` or `~/.claude/settings.json`.
pub fn settings_path(project: Option<&Path>, home: &Path) -> PathBuf {
    match project {
        Some(dir) => dir.join(".claude").join("settings.json"),
        None => home.join(".claude").join("settings.json"),
    }
}

/// Read a settings file; a missing or empty file is `{}`.
pub fn read(path: &Path) -> Result<Value, SettingsError> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(Value::Object(Map::new())),
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| SettingsError::Invalid(format!("{} is not valid JSON: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Object(Map::new())),
        Err(e) => Err(SettingsError::Io(format!("cannot read {}: {e}", path.display()))),
    }
}

/// The text we write: pretty JSON (2 spaces) and a final newline.
pub fn render(settings: &Value) -> String {
    let mut s = serde_json::to_string_pretty(settings).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

/// Write atomically: a temporary file in the same directory, then rename over the target.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), SettingsError> {
    use std::io::Write;
    let io = |e: std::io::Error| SettingsError::Io(format!("cannot write {}: {e}", path.display()));
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(".settings.json.{}.tmp", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = f.set_permissions(meta.permissions());
    }
    let written = f.write_all(text.as_bytes()).and_then(|_| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|_| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_settings() -> Value {
        json!({
            "model": "opus",
            "permissions": { "allow": ["Bash(ls)"] },
            "hooks": {
                "PreToolUse": [{ "matcher": "Bash", "hooks": [{ "type": "command", "command": "/usr/bin/guard" }] }],
                "Stop": [{ "hooks": [{ "type": "command", "command": "say done" }] }]
            }
        })
    }

    #[test]
    fn install_keeps_everything_and_is_idempotent() {
        let mut s = user_settings();
        install(&mut s, "/opt/bin/agent-console-hook", 5, DEFAULT_HOLD_TIMEOUT_SECS).expect("install");
        assert_eq!(s["model"], "opus");
        assert_eq!(s["permissions"]["allow"][0], "Bash(ls)");
        let pre = s["hooks"]["PreToolUse"].as_array().expect("array");
        assert_eq!(pre.len(), 2);
        assert_eq!(pre[0]["hooks"][0]["command"], "/usr/bin/guard");
        assert_eq!(pre[1]["matcher"], "*");
        assert_eq!(
            pre[1]["hooks"][0],
            json!({"type":"command","command":"/opt/bin/agent-console-hook","timeout":86400})
        );
        let notif = &s["hooks"]["Notification"][0]["hooks"][0];
        assert_eq!(notif, &json!({"type":"command","command":"/opt/bin/agent-console-hook","timeout":5}));
        let start = s["hooks"]["SessionStart"][0]["hooks"].as_array().expect("group");
        assert_eq!(
            start[1],
            json!({"type":"command","command":"/opt/bin/agent-console-hook --inbox","asyncRewake":true,"timeout":86400})
        );
        assert!(s["hooks"]["Stop"][1].get("matcher").is_none(), "Stop has no matcher");
        for (event, _) in EVENTS {
            assert!(s["hooks"][event].as_array().is_some_and(|g| g.iter().any(|g| is_ours(&g["hooks"][0]))), "{event}");
        }
        let once = s.clone();
        install(&mut s, "/opt/bin/agent-console-hook", 5, DEFAULT_HOLD_TIMEOUT_SECS).expect("install again");
        assert_eq!(s, once);
        // A moved binary is updated in place, not added twice.
        install(&mut s, "/new/agent-console-hook", 5, 3600).expect("install moved");
        assert_eq!(s["hooks"]["PreToolUse"].as_array().map(Vec::len), Some(2));
        assert_eq!(s["hooks"]["PreToolUse"][1]["hooks"][0]["command"], "/new/agent-console-hook --hold-secs 3300");
        assert_eq!(s["hooks"]["PreToolUse"][1]["hooks"][0]["timeout"], 3600);
        assert_eq!(program("\"/a b/agent-console-hook\" --inbox"), "/a b/agent-console-hook");
    }

    #[test]
    fn uninstall_removes_only_ours() {
        let mut s = user_settings();
        install(&mut s, "/opt/bin/agent-console-hook", 5, DEFAULT_HOLD_TIMEOUT_SECS).expect("install");
        uninstall(&mut s).expect("uninstall");
        assert_eq!(s, user_settings());
        let mut empty = json!({"theme": "dark"});
        install(&mut empty, "/x/agent-console-hook", 5, DEFAULT_HOLD_TIMEOUT_SECS).expect("install");
        uninstall(&mut empty).expect("uninstall");
        assert_eq!(empty, json!({"theme": "dark"}));
    }

    #[test]
    fn refuses_non_objects() {
        assert!(install(&mut json!([1]), "/x/agent-console-hook", 5, 60).is_err());
        assert!(install(&mut json!({"hooks": 3}), "/x/agent-console-hook", 5, 60).is_err());
    }
}
