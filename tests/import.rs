//! `agent-console import claude-code`: real Claude Code transcripts (tests/fixtures/claude-transcripts,
//! written by the real CLI against a stand-in model API) imported on a stopped data dir and through
//! a running collector, twice, and alongside the same session reported live by Claude Code's
//! telemetry and hooks: totals exact.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{as_f64, as_i64, spawn_with};
use serde_json::json;

const TOKEN: &str = "import-test-token";

fn fixture_tree() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/claude-transcripts/projects")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

/// A `~/.claude/projects` tree from the real lines: the captured project (streamed duplicates,
/// a resumed and a forked session, a subagent, 5-minute and 1-hour cache writes), plus the same
/// session again under a second project folder (a moved checkout: every line repeated).
fn synthetic_tree() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tree");
    copy_dir(&fixture_tree(), root.path());
    let src = fixture_tree().join("-tmp-cap-proj/11111111-1111-4111-8111-111111111111.jsonl");
    std::fs::create_dir_all(root.path().join("-tmp-cap-moved")).expect("mkdir");
    std::fs::copy(src, root.path().join("-tmp-cap-moved/11111111-1111-4111-8111-111111111111.jsonl")).expect("copy");
    root
}

fn import(tree: &Path, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_agent-console"))
        .args(["import", "claude-code"])
        .arg(tree)
        .args(extra)
        .env_remove("AGENT_CONSOLE_INGEST_TOKEN")
        .output()
        .expect("run agent-console import");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "import failed: {text} {}", String::from_utf8_lossy(&out.stderr));
    text
}

/// (calls, input, output, cache read, cache write, tool calls, prompts, sessions)
const TOTALS_SQL: &str = "SELECT (SELECT count(*) FROM model_calls), (SELECT sum(input_tokens) FROM model_calls),
    (SELECT sum(output_tokens) FROM model_calls), (SELECT sum(cache_read_tokens) FROM model_calls),
    (SELECT sum(cache_write_tokens) FROM model_calls), (SELECT count(*) FROM tool_calls),
    (SELECT count(*) FROM logs WHERE event_name = 'claude_code.user_prompt'),
    (SELECT count(*) FROM sessions)";

/// What the transcripts hold (counted independently: distinct request ids / tool_use ids /
/// prompt ids; the stand-in answers a tool-use turn with 2100 + 1800 read + 300 written input
/// tokens and 64 output, a final turn with 2300 + 2000 read and 21 output).
const EXPECTED: [i64; 8] = [11, 46_700, 489, 20_800, 1_800, 6, 4, 4];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_data_dir_imported_twice_counts_once() {
    let tree = synthetic_tree();
    let data = tempfile::tempdir().expect("data");
    let data_arg = data.path().to_str().expect("utf8").to_string();
    let first = import(tree.path(), &["--data-dir", &data_arg]);
    assert!(first.contains("imported 5 files"), "{first}");
    import(tree.path(), &["--data-dir", &data_arg]);

    let app = spawn_with(|a| a.data_dir = data.path().to_path_buf()).await;
    let row = &app.rows(TOTALS_SQL).await[0];
    let got: Vec<i64> = row.iter().map(as_i64).collect();
    assert_eq!(got, EXPECTED, "calls, input, output, cache read, cache write, tools, prompts, sessions");

    // Imported sessions are finished where their transcripts end, not running.
    let states = app.rows("SELECT status, count(*) FROM sessions GROUP BY ALL").await;
    assert_eq!(states, vec![vec![json!("finished"), json!(4)]]);
    // Provenance: from a transcript, priced from the price table.
    let marks = app.rows("SELECT source, cost_source, count(*) FROM model_calls GROUP BY ALL").await;
    assert_eq!(marks, vec![vec![json!("transcript"), json!("computed"), json!(11)]]);
    let cost = as_f64(&app.scalar("SELECT sum(cost_usd) FROM model_calls").await);
    assert!(cost > 0.0, "priced: {cost}");
    // Both cache-write kinds are kept on the imported records.
    let h1 = app
        .scalar("SELECT sum(CAST(attributes->>'cache_creation.ephemeral_1h_input_tokens' AS BIGINT)) FROM logs WHERE event_name = 'claude_code.api_request'")
        .await;
    assert_eq!(as_i64(&h1), 600);
    // The subagent is a session of its own, linked to its parent, named by its type.
    let sub = app
        .rows("SELECT s.parent_session_id, m.agent_id FROM sessions s JOIN model_calls m USING (session_id) WHERE s.session_id LIKE '%/agent-%' GROUP BY ALL")
        .await;
    assert_eq!(sub, vec![vec![json!("22222222-2222-4222-8222-222222222222"), json!("ad0ba852c082cad01")]]);
    // Sessions keep where they ran.
    let cwd = app
        .rows("SELECT DISTINCT attributes->>'agent_console.cwd', attributes->>'git.branch' FROM logs WHERE session_id = '11111111-1111-4111-8111-111111111111'")
        .await;
    assert_eq!(cwd, vec![vec![json!("/tmp/cap/proj"), json!("feature/import-demo")]]);
    // Tool calls with input and output.
    let tool = app.rows("SELECT tool_name, success, count(*) FROM tool_calls GROUP BY ALL ORDER BY 1").await;
    assert_eq!(tool, vec![vec![json!("Agent"), json!(true), json!(1)], vec![json!("Bash"), json!(true), json!(5)]]);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_data_dir_held_by_a_collector_is_refused() {
    let app = spawn_with(|_| {}).await;
    let tree = synthetic_tree();
    let out = Command::new(env!("CARGO_BIN_EXE_agent-console"))
        .args(["import", "claude-code"])
        .arg(tree.path())
        .arg("--data-dir")
        .arg(app.dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another process holds it") && err.contains("--url"), "{err}");
    assert_eq!(as_i64(&app.scalar("SELECT count(*) FROM model_calls").await), 0);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_collector_import_twice_counts_once() {
    let app = spawn_with(|a| a.ingest_token = Some(TOKEN.into())).await;
    let tree = synthetic_tree();
    for _ in 0..2 {
        import(tree.path(), &["--url", &app.http, "--token", TOKEN]);
    }
    let got: Vec<i64> = app.rows(TOTALS_SQL).await[0].iter().map(as_i64).collect();
    assert_eq!(got, EXPECTED);
    // Without the token: refused, nothing stored twice.
    let out = Command::new(env!("CARGO_BIN_EXE_agent-console"))
        .args(["import", "claude-code"])
        .arg(tree.path())
        .args(["--url", &app.http])
        .env_remove("AGENT_CONSOLE_INGEST_TOKEN")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{}", String::from_utf8_lossy(&out.stderr));
    app.shutdown().await;
}

/// The real CLI, installed by the control tests' harness (`~/.cache/agent-console/npm`).
fn claude_bin() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).expect("HOME");
    let bin = home.join(".cache/agent-console/npm/node_modules/@anthropic-ai/claude-code-linux-x64/claude");
    if !bin.exists() {
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(home.join(".cache/agent-console/npm"))
            .arg("@anthropic-ai/claude-code@2.1.197")
            .output()
            .expect("npm (the Claude Code CLI is needed by this test)");
        assert!(out.status.success(), "npm install: {}", String::from_utf8_lossy(&out.stderr));
    }
    bin
}

struct FakeApi {
    child: std::process::Child,
    port: u16,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fake_api(dir: &Path) -> FakeApi {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/fake_anthropic_transcripts.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg("0")
        .arg(dir.join("api.jsonl"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("port");
    FakeApi { port: line.trim().parse().expect("port"), child }
}

/// One real session reported live (native telemetry + http hooks), then its transcript imported
/// twice through the collector: nothing is counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_alongside_live_telemetry_and_hooks_counts_once() {
    let app = spawn_with(|a| a.ingest_token = Some(TOKEN.into())).await;
    let project = tempfile::tempdir().expect("project");
    let home = tempfile::tempdir().expect("home");
    let api = fake_api(project.path());
    let url = format!("{}/hooks/claude", app.http);
    let h = json!([{ "hooks": [{ "type": "http", "url": url, "timeout": 30,
                                 "headers": { "Authorization": format!("Bearer {TOKEN}") } }] }]);
    let settings = json!({ "hooks": { "UserPromptSubmit": h, "PreToolUse": h, "PostToolUse": h, "Stop": h } });
    std::fs::create_dir_all(project.path().join(".claude")).expect("mkdir");
    std::fs::write(project.path().join(".claude/settings.json"), settings.to_string()).expect("settings");
    let session = "33333333-3333-4333-8333-333333333333";
    let bin = claude_bin();
    let run = |prompt: &str, resume: bool| {
        let mut c = Command::new(&bin);
        c.args(["-p", prompt, "--allowedTools", "Bash", "--output-format", "json"]);
        if resume {
            c.args(["--resume", session]);
        } else {
            c.args(["--session-id", session]);
        }
        let out = c
            .current_dir(project.path())
            .env_clear()
            .env("HOME", home.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("ANTHROPIC_BASE_URL", format!("http://127.0.0.1:{}", api.port))
            .env("ANTHROPIC_API_KEY", "sk-ant-api03-local")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("DISABLE_ERROR_REPORTING", "1")
            .env("CLAUDE_CODE_ENABLE_TELEMETRY", "1")
            .env("OTEL_LOGS_EXPORTER", "otlp")
            .env("OTEL_METRICS_EXPORTER", "otlp")
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &app.http)
            .env("OTEL_EXPORTER_OTLP_HEADERS", format!("Authorization=Bearer {TOKEN}"))
            .env("OTEL_LOGS_EXPORT_INTERVAL", "500")
            .stdin(Stdio::null())
            .output()
            .expect("claude");
        assert!(out.status.success(), "claude: {}", String::from_utf8_lossy(&out.stderr));
    };
    run("Run steps=2 in the shell", false);
    run("Run steps=1 in the shell please", true);
    let flush = |app: &common::TestApp| {
        let (c, u) = (app.client.clone(), app.http.clone());
        async move {
            let r = c.post(format!("{u}/api/flush")).bearer_auth(TOKEN).send().await.expect("flush");
            assert_eq!(r.status(), 200);
        }
    };
    flush(&app).await;
    let totals_sql = format!(
        "SELECT (SELECT count(*) FROM model_calls WHERE session_id = '{session}'),
                (SELECT sum(input_tokens) FROM model_calls WHERE session_id = '{session}'),
                (SELECT sum(output_tokens) FROM model_calls WHERE session_id = '{session}'),
                (SELECT count(*) FROM tool_calls WHERE session_id = '{session}'),
                (SELECT count(*) FROM logs WHERE session_id = '{session}' AND event_name = 'claude_code.user_prompt')"
    );
    let live: Vec<i64> = app.rows(&totals_sql).await[0].iter().map(as_i64).collect();
    // Five model calls (3 + 2), three Bash tool calls, two prompts, reported live.
    assert_eq!(live, vec![5, 3 * 4200 + 2 * 4300, 3 * 64 + 2 * 21, 3, 2], "live");
    let projects = home.path().join(".claude/projects");
    for _ in 0..2 {
        import(&projects, &["--url", &app.http, "--token", TOKEN]);
    }
    let after: Vec<i64> = app.rows(&totals_sql).await[0].iter().map(as_i64).collect();
    assert_eq!(after, live, "import after live counts nothing twice");
    let imported = app.scalar("SELECT count(*) FROM model_calls WHERE source = 'transcript'").await;
    assert_eq!(as_i64(&imported), 0);
    app.shutdown().await;
}
