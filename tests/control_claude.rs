//! The control plane against the real Claude Code CLI 2.1.197 in `-p` mode, offline: the stand-in
//! model API (`tests/clients/fake_anthropic_steps.py`, it logs every request and its "model" runs
//! `echo step-K | tee -a ran.log`), a collector on port 0, and Claude Code's hooks wired both ways:
//! the installed `agent-console-hook` binary and `http` hooks. Pause holds the agent (no model
//! call until resume), inject reaches the next model request, an approval rule holds a Bash call
//! until approved or denied (the deny reason is the tool result), kill stops before the tool and
//! the next model call (`terminal_reason: "hook_stopped"`); each command ends `observed`.
//! Also without the CLI: the fail-safe of a held hook whose collector dies, and capabilities of a
//! session seen only through OTLP.
//!
//! The CLI is installed with npm into `~/.cache/agent-console/npm` when missing (pinned version).

mod common;
use common::*;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const CLI_VERSION: &str = "2.1.197";

/// Build the hook binary once per test binary.
fn hook_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "agent-console-hook"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building agent-console-hook failed");
        let dir = std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("release")).unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("current exe");
            exe.parent().and_then(Path::parent).expect("target/release").to_path_buf()
        });
        dir.join("agent-console-hook")
    })
}

/// The real Claude Code CLI, installed with npm (pinned) into `~/.cache/agent-console/npm` if missing.
fn claude_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).expect("HOME");
        let prefix = home.join(".cache/agent-console/npm");
        let bin = prefix.join("node_modules/@anthropic-ai/claude-code-linux-x64/claude");
        let version_ok = |b: &Path| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(CLI_VERSION))
        };
        if !version_ok(&bin) {
            std::fs::create_dir_all(&prefix).expect("npm prefix");
            let out = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&prefix)
                .arg(format!("@anthropic-ai/claude-code@{CLI_VERSION}"))
                .output();
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => panic!(
                    "cannot install the Claude Code CLI {CLI_VERSION} with npm (needed by these tests): {}",
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => {
                    panic!("cannot run npm to install the Claude Code CLI {CLI_VERSION} (needed by these tests): {e}")
                }
            }
        }
        assert!(version_ok(&bin), "the Claude Code CLI {CLI_VERSION} is not at {} after npm install", bin.display());
        bin
    })
}

/// The stand-in model API; killed on drop.
struct FakeApi {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl FakeApi {
    fn start(dir: &Path, delay_s: f64) -> FakeApi {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/fake_anthropic_steps.py");
        let log = dir.join("api.jsonl");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg("0")
            .arg(&log)
            .args(["--delay", &delay_s.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 for the stand-in model API");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("port line");
        let port = line.trim().parse().expect("port");
        FakeApi { child, port, log }
    }

    /// Main-loop requests (those offering Bash), in arrival order.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["tools"].as_array().is_some_and(|t| t.iter().any(|n| n == "Bash")))
            .collect()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Via {
    Binary,
    Http,
}

/// A project directory with Claude Code's hooks pointed at the collector.
struct Project {
    dir: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl Project {
    fn new(app: &TestApp, via: Via) -> Project {
        let p = Project { dir: tempfile::tempdir().expect("dir"), home: tempfile::tempdir().expect("home") };
        match via {
            Via::Binary => {
                let out = Command::new(hook_bin())
                    .args(["install", "--project"])
                    .arg(p.dir.path())
                    .env("HOME", p.home.path())
                    .output()
                    .expect("install");
                assert!(out.status.success(), "install: {}", String::from_utf8_lossy(&out.stderr));
            }
            Via::Http => {
                let url = format!("{}/hooks/claude", app.http);
                let h = json!([{ "hooks": [{ "type": "http", "url": url, "timeout": 600,
                                             "headers": { "X-Agent-Console-Hold-Secs": "300" } }] }]);
                let settings = json!({ "hooks": { "UserPromptSubmit": h, "PreToolUse": h, "PostToolUse": h,
                    "PostToolBatch": h, "Stop": h, "SessionEnd": h } });
                std::fs::create_dir_all(p.dir.path().join(".claude")).expect("mkdir");
                std::fs::write(p.dir.path().join(".claude/settings.json"), settings.to_string()).expect("settings");
            }
        }
        p
    }

    fn ran(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("ran.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `claude -p PROMPT --session-id ID` against the stand-in API, hooks to `app`.
    fn claude(&self, app: &TestApp, api: &FakeApi, session: &str, prompt: &str) -> Child {
        Command::new(claude_bin())
            .args(["-p", prompt, "--session-id", session, "--allowedTools", "Bash", "--output-format", "json"])
            .current_dir(self.dir.path())
            .env_clear()
            .env("HOME", self.home.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("ANTHROPIC_BASE_URL", format!("http://127.0.0.1:{}", api.port))
            .env("ANTHROPIC_API_KEY", "sk-ant-api03-local")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("DISABLE_ERROR_REPORTING", "1")
            .env("AGENT_CONSOLE_ENDPOINT", &app.http)
            .env("AGENT_CONSOLE_SPOOL_DIR", self.home.path().join("spool"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn claude")
    }
}

/// Wait for the CLI to exit; its JSON result.
async fn result(child: Child) -> Value {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.expect("join").expect("wait claude");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "claude failed: {text} {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("claude result is not JSON ({e}): {text}"))
}

/// Poll `check` every 50 ms until it returns Some, for at most 60 s.
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn events_seen(app: &TestApp, session: &str, event: &str) -> i64 {
    as_i64(
        &app.scalar(&format!("SELECT count(*) FROM logs WHERE session_id = '{session}' AND event_name = '{event}'"))
            .await,
    )
}

async fn command(app: &TestApp, session: &str, body: Value) -> (u16, Value) {
    let r = app
        .client
        .post(format!("{}/api/sessions/{session}/commands", app.http))
        .json(&body)
        .send()
        .await
        .expect("post command");
    let status = r.status().as_u16();
    (status, r.json().await.expect("command json"))
}

async fn session_detail(app: &TestApp, session: &str) -> Value {
    app.client
        .get(format!("{}/api/sessions/{session}", app.http))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

async fn pending_approval(app: &TestApp, session: &str, needle: &str) -> Value {
    wait_for(&format!("an approval for {needle}"), || async {
        let v: Value = app
            .client
            .get(format!("{}/api/approvals?session={session}", app.http))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["approvals"]
            .as_array()?
            .iter()
            .find(|a| a["tool_input"]["command"].as_str().is_some_and(|c| c.contains(needle)))
            .cloned()
    })
    .await
}

async fn set_policy(app: &TestApp, rules: Value) {
    let r = app
        .client
        .put(format!("{}/api/approvals/policy", app.http))
        .json(&json!({ "rules": rules }))
        .send()
        .await
        .expect("put policy");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
}

/// Wait until every command of the session is final; (kind, status) in order.
async fn final_commands(app: &TestApp, session: &str) -> Vec<(String, String)> {
    wait_for("every command final", || async {
        let rows = app
            .rows(&format!(
                "SELECT kind, status FROM control_commands WHERE session_id = '{session}' ORDER BY accepted_at"
            ))
            .await;
        let v: Vec<(String, String)> = rows
            .iter()
            .map(|r| (r[0].as_str().unwrap_or("").to_string(), r[1].as_str().unwrap_or("").to_string()))
            .collect();
        v.iter().all(|(_, s)| s != "accepted" && s != "delivered").then_some(v)
    })
    .await
}

fn texts_of(req: &Value) -> String {
    req["messages"].to_string()
}

fn uuid(n: u8) -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_nanos();
    let h = format!("{t:032x}");
    format!("{}-{}-4{}-8{}-{}{:02x}", &h[..8], &h[8..12], &h[13..16], &h[17..20], &h[20..30], n)
}

/// Pause (no model call until resume), inject while paused (in the next request), an approval
/// rule holding step 2, denied with a reason (the tool result is that reason).
async fn pause_inject_deny(via: Via) {
    let app = spawn().await;
    let work = tempfile::tempdir().expect("work");
    let api = FakeApi::start(work.path(), 1.5);
    let project = Project::new(&app, via);
    let session = uuid(1);
    set_policy(&app, json!([{ "name": "step-two", "tool": "Bash", "input": "step-2", "session": session }])).await;
    let child = project.claude(&app, &api, &session, "Run steps=2 in the shell");
    wait_for("UserPromptSubmit", || async {
        (events_seen(&app, &session, "UserPromptSubmit").await > 0).then_some(())
    })
    .await;
    let (st, cmd) = command(&app, &session, json!({"kind": "pause", "reason": "hold on"})).await;
    assert_eq!(st, 201, "{cmd}");
    let held = wait_for("a held hook", || async {
        let d = session_detail(&app, &session).await;
        d["session"]["control"]["held"].as_array().filter(|h| !h.is_empty()).map(|h| h[0].clone())
    })
    .await;
    assert!(["PreToolUse", "PostToolBatch"].contains(&held["event"].as_str().unwrap_or("")), "{held}");
    let d = session_detail(&app, &session).await;
    assert_eq!(d["session"]["status"], "paused", "the session tracker shows the pause");
    assert_eq!(d["session"]["control"]["state"], "paused");
    let (st, inj) = command(&app, &session, json!({"kind": "inject", "message": "MARKER-INJECT-7"})).await;
    assert_eq!(st, 201, "{inj}");
    let held_calls = api.requests().len();
    if held["event"] == "PreToolUse" {
        assert!(project.ran().is_empty(), "the held tool did not run");
    }
    // Give the agent every chance to misbehave while paused.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(api.requests().len(), held_calls, "no model call while paused");
    let resumed_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("t").as_secs_f64();
    let (st, res) = command(&app, &session, json!({"kind": "resume"})).await;
    assert_eq!(st, 201, "{res}");
    let approval = pending_approval(&app, &session, "step-2").await;
    assert_eq!(approval["rule"], "step-two");
    assert_eq!(approval["tool_name"], "Bash");
    let (st, deny) = command(
        &app,
        &session,
        json!({"kind": "deny", "reason": "DENY-REASON-7: not today", "tool_use_id": approval["tool_use_id"]}),
    )
    .await;
    assert_eq!(st, 201, "{deny}");
    let out = result(child).await;
    assert_eq!(project.ran(), vec!["step-1"], "step 1 ran after resume, step 2 was denied");
    let reqs = api.requests();
    for r in &reqs[held_calls..] {
        assert!(r["t"].as_f64().unwrap_or(0.0) >= resumed_at, "a model call happened during the pause");
    }
    assert!(reqs.iter().any(|r| texts_of(r).contains("MARKER-INJECT-7")), "the injected text reached the model");
    let denied = reqs.iter().any(|r| {
        r["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
            .any(|b| b["type"] == "tool_result" && b["content"].to_string().contains("DENY-REASON-7: not today"))
    });
    assert!(denied, "the deny reason is the tool result");
    assert!(out["permission_denials"].as_array().is_some_and(|d| !d.is_empty()), "{out}");
    let cmds = final_commands(&app, &session).await;
    assert_eq!(
        cmds,
        ["pause", "inject", "resume", "deny"]
            .iter()
            .map(|k| (k.to_string(), "observed".to_string()))
            .collect::<Vec<_>>(),
        "every command observed"
    );
    let audit = app
        .rows(&format!(
            "SELECT action, count(*) FROM control_audit WHERE session_id = '{session}' GROUP BY 1 ORDER BY 1"
        ))
        .await;
    let audit: Vec<(String, i64)> =
        audit.iter().map(|r| (r[0].as_str().unwrap_or("").to_string(), as_i64(&r[1]))).collect();
    for (action, n) in
        [("command.accepted", 4), ("command.delivered", 4), ("command.observed", 4), ("approval.requested", 1)]
    {
        assert!(audit.contains(&(action.to_string(), n)), "{action} x{n} in {audit:?}");
    }
    // The same trail is the session timeline's `command` items (what the console shows), in order.
    let tl: Value = app
        .client
        .get(format!("{}/api/sessions/{session}/timeline?types=command&limit=1000", app.http))
        .send()
        .await
        .expect("timeline")
        .json()
        .await
        .expect("timeline json");
    let items = tl["items"].as_array().cloned().unwrap_or_default();
    let total: i64 = audit.iter().map(|(_, n)| n).sum();
    assert_eq!(items.len() as i64, total, "one timeline item per audit row: {tl}");
    assert!(items.iter().all(|i| i["type"] == "command" && i["actor"].is_string()), "{tl}");
    let delivered = items.iter().filter(|i| i["action"] == "command.delivered").count();
    assert_eq!(delivered, 4, "{tl}");
    if via == Via::Binary {
        let t = as_i64(
            &app.scalar(&format!(
                "SELECT epoch_ms(min(time)) FROM logs WHERE session_id = '{session}' AND event_name = 'PostToolUse'"
            ))
            .await,
        );
        eprintln!("control bench: resume -> held tool finished (PostToolUse) {:.0} ms", t as f64 - resumed_at * 1000.0);
    }
    app.shutdown().await;
}

/// An approval rule holds step 1 until approved (it runs), then step 2 until the session is
/// killed: the tool never runs and no model call follows.
async fn approve_then_kill(via: Via) {
    let app = spawn().await;
    let work = tempfile::tempdir().expect("work");
    let api = FakeApi::start(work.path(), 0.0);
    let project = Project::new(&app, via);
    let session = uuid(2);
    set_policy(&app, json!([{ "name": "every-step", "tool": "Bash", "input": "step-", "session": session }])).await;
    let child = project.claude(&app, &api, &session, "Run steps=2 in the shell");
    let first = pending_approval(&app, &session, "step-1").await;
    assert!(project.ran().is_empty(), "held until approved");
    let (st, ok) = command(&app, &session, json!({"kind": "approve"})).await;
    assert_eq!(st, 201, "{ok}");
    assert_eq!(ok["tool_use_id"], first["tool_use_id"]);
    pending_approval(&app, &session, "step-2").await;
    let calls = api.requests().len();
    let (st, kill) = command(&app, &session, json!({"kind": "kill", "reason": "stop now"})).await;
    assert_eq!(st, 201, "{kill}");
    let out = result(child).await;
    assert_eq!(out["terminal_reason"], "hook_stopped", "{out}");
    assert_eq!(project.ran(), vec!["step-1"]);
    assert_eq!(api.requests().len(), calls, "no model call after the kill");
    let cmds = final_commands(&app, &session).await;
    assert_eq!(
        cmds,
        vec![("approve".to_string(), "observed".to_string()), ("kill".to_string(), "observed".to_string())]
    );
    let (st, again) = command(&app, &session, json!({"kind": "pause"})).await;
    assert_eq!(st, 409, "a killed (and ended) session refuses: {again}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_binary_pause_inject_deny() {
    pause_inject_deny(Via::Binary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_hooks_pause_inject_deny() {
    pause_inject_deny(Via::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_binary_approve_then_kill() {
    approve_then_kill(Via::Binary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_hooks_approve_then_kill() {
    approve_then_kill(Via::Http).await;
}

/// Run the hook binary as Claude Code would (stdin JSON).
fn run_hook(stdin: &[u8], home: &Path, env: &[(&str, String)]) -> (Option<i32>, Vec<u8>, Duration) {
    let started = Instant::now();
    let mut cmd = Command::new(hook_bin());
    cmd.env_clear().env("HOME", home).env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn hook");
    child.stdin.take().expect("stdin").write_all(stdin).expect("stdin");
    let out = child.wait_with_output().expect("wait");
    (out.status.code(), out.stdout, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_killed_while_paused_the_hook_retries_then_denies_at_its_deadline() {
    let app = spawn().await;
    let home = tempfile::tempdir().expect("home");
    let session = "failsafe-session-1";
    let env = vec![
        ("AGENT_CONSOLE_ENDPOINT", app.http.clone()),
        ("AGENT_CONSOLE_SPOOL_DIR", home.path().join("spool").display().to_string()),
        ("AGENT_CONSOLE_HOOK_HOLD_SECS", "6".to_string()),
        ("AGENT_CONSOLE_HOOK_POLL_MS", "500".to_string()),
    ];
    let start = json!({"session_id": session, "hook_event_name": "UserPromptSubmit", "prompt": "x"});
    let (code, out, _) = tokio::task::spawn_blocking({
        let (home, env) = (home.path().to_path_buf(), env.clone());
        move || run_hook(start.to_string().as_bytes(), &home, &env)
    })
    .await
    .expect("join");
    assert_eq!((code, out.is_empty()), (Some(0), true));
    let (st, body) = command(&app, session, json!({"kind": "pause"})).await;
    assert_eq!(st, 201, "{body}");
    let pre = json!({"session_id": session, "hook_event_name": "PreToolUse", "tool_name": "Bash",
                     "tool_use_id": "toolu_failsafe", "tool_input": {"command": "rm -rf /tmp/x"}});
    let hook = tokio::task::spawn_blocking({
        let (home, env) = (home.path().to_path_buf(), env.clone());
        move || run_hook(pre.to_string().as_bytes(), &home, &env)
    });
    wait_for("the held PreToolUse", || async {
        let d = session_detail(&app, session).await;
        d["session"]["control"]["held"].as_array().filter(|h| !h.is_empty()).map(|_| ())
    })
    .await;
    // The collector goes away mid-hold: the hook keeps retrying, never allows, and denies itself
    // before its own deadline.
    app.shutdown().await;
    let (code, out, took) = hook.await.expect("join");
    assert_eq!(code, Some(0));
    let v: Value =
        serde_json::from_slice(&out).unwrap_or_else(|_| panic!("a decision: {:?}", String::from_utf8_lossy(&out)));
    assert_eq!(v["hookSpecificOutput"]["permissionDecision"], "deny", "{v}");
    assert!(took >= Duration::from_secs(5) && took < Duration::from_secs(9), "answered at its deadline: {took:?}");
    // And the next hook of the paused session, with the collector still down, holds and denies too.
    let next = json!({"session_id": session, "hook_event_name": "PreToolUse", "tool_name": "Bash",
                      "tool_use_id": "toolu_failsafe_2", "tool_input": {"command": "ls"}});
    let (code, out, took) = tokio::task::spawn_blocking({
        let (home, env) = (home.path().to_path_buf(), env.clone());
        move || run_hook(next.to_string().as_bytes(), &home, &env)
    })
    .await
    .expect("join");
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_slice(&out).expect("a decision");
    assert_eq!(v["hookSpecificOutput"]["permissionDecision"], "deny", "{v}");
    assert!(took >= Duration::from_secs(5), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_only_sessions_refuse_control_with_the_reason() {
    let app = spawn().await;
    for f in ["claude-code/otlp/logs-1.pb", "claude-code/otlp/logs-2.pb"] {
        assert_eq!(app.post("/v1/logs", "application/x-protobuf", fixture(f)).await.status(), 200);
    }
    let session = "f140c7f4-628d-4454-b78d-f488814a62f0";
    let (st, body) = command(&app, session, json!({"kind": "pause"})).await;
    assert_eq!(st, 409, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("agent-console-hook install")), "{body}");
    assert_eq!(body["capabilities"]["pause"]["available"], false);
    let d = session_detail(&app, session).await;
    assert_eq!(d["session"]["capabilities"]["pause"]["available"], false);
    assert_eq!(d["session"]["control"]["runtime"], "claude-code");
    let (st, _) = command(&app, "no-such-session", json!({"kind": "pause"})).await;
    assert_eq!(st, 404);
    let (st, body) = command(&app, session, json!({"kind": "explode"})).await;
    assert_eq!(st, 400, "{body}");
    // The refusal is audited.
    let n = as_i64(&app.scalar("SELECT count(*) FROM control_audit WHERE action = 'command.refused'").await);
    assert_eq!(n, 1);
    app.shutdown().await;
}

/// Benchmark (ignored; `cargo test --release --test control_claude -- --ignored --nocapture
/// resume_to_held_tool_start`): the real CLI through the installed hook binary runs 20 shell steps;
/// before each, while the model call that asks for it is in flight, the session is paused, so the
/// step's PreToolUse is held; then resume. Times from the `POST resume` to the held tool running
/// (its line appearing in `ran.log`, polled every 2 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn resume_to_held_tool_start() {
    const STEPS: usize = 20;
    let app = spawn().await;
    let work = tempfile::tempdir().expect("work");
    let api = FakeApi::start(work.path(), 0.6);
    let project = Project::new(&app, Via::Binary);
    let session = uuid(3);
    let child = project.claude(&app, &api, &session, &format!("Run steps={STEPS} in the shell"));
    let mut samples = Vec::new();
    for k in 1..=STEPS {
        // The request that asks for step k has arrived: the "model" thinks for 0.6 s.
        wait_for(&format!("request {k}"), || async { (api.requests().len() >= k).then_some(()) }).await;
        let (st, cmd) = command(&app, &session, json!({"kind": "pause"})).await;
        assert_eq!(st, 201, "{cmd}");
        let held = wait_for("a held hook", || async {
            let d = session_detail(&app, &session).await;
            d["session"]["control"]["held"].as_array().filter(|h| !h.is_empty()).map(|h| h[0].clone())
        })
        .await;
        assert_eq!(held["event"], "PreToolUse", "step {k}: {held}");
        assert_eq!(project.ran().len(), k - 1, "the held tool has not run");
        let t0 = Instant::now();
        let (st, res) = command(&app, &session, json!({"kind": "resume"})).await;
        assert_eq!(st, 201, "{res}");
        let until = t0 + Duration::from_secs(30);
        while project.ran().len() < k {
            assert!(Instant::now() < until, "step {k} did not run after resume");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        samples.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    result(child).await;
    samples.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    eprintln!(
        "control bench: POST resume -> held tool ran (real CLI, hook binary): n={} p50={:.0} ms p90={:.0} ms p99={:.0} ms max={:.0} ms",
        samples.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    assert!(samples.iter().all(|s| s.is_finite()));
    app.shutdown().await;
}
