//! `agent-console-hook`: run by Claude Code as a `command` hook. It posts the hook JSON to the
//! collector's `POST /hooks/claude` (stored there, then decided by the control plane), prints the
//! decision the collector signed, and exits 0. While a session is paused (or a tool call awaits
//! approval) the collector answers "hold": the hook keeps asking (long-poll, retried across
//! collector restarts) until the hold ends, and answers the fallback (deny / stop) itself before its
//! own deadline, so a pause never silently becomes "allow". With the collector away and nothing
//! paused it fails open at once and spools the call. `--inbox` is the `asyncRewake` waiter that
//! wakes an idle interactive session with a queued message; `install` / `uninstall` edit
//! Claude Code's settings.json.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent_console_hook::client::{self, Endpoint};
use agent_console_hook::config::Config;
use agent_console_hook::settings;
use agent_console_hook::spool::{HookCall, Kind, Record, Spool};
use agent_console_hook::translate::{self, Input};
use agent_console_hook::wire::{self, Answer, InboxAnswer};
use serde_json::Value;

/// Largest stdin we read.
const MAX_STDIN: u64 = 32 * 1024 * 1024;

const USAGE: &str = "\
agent-console-hook: Claude Code hooks -> agent-console (hook calls, decisions, control)

USAGE:
  agent-console-hook                      hook mode: hook JSON on stdin (run by Claude Code)
  agent-console-hook --inbox              the asyncRewake inbox waiter (wakes an idle session)
  agent-console-hook install   [--project DIR | --user] [--print] [--timeout SECS] [--hold-timeout SECS]
  agent-console-hook uninstall [--project DIR | --user] [--print]

Configuration (environment first, then ~/.config/agent-console/hook.toml or $AGENT_CONSOLE_HOOK_CONFIG):
  AGENT_CONSOLE_ENDPOINT (http://127.0.0.1:4318), AGENT_CONSOLE_TOKEN (the ingest token; decisions
  must be signed with it), AGENT_CONSOLE_TASK_ID, AGENT_CONSOLE_AGENT_NAME,
  AGENT_CONSOLE_HOOK_TIMEOUT_MS (1000), AGENT_CONSOLE_HOOK_HOLD_SECS (86100),
  AGENT_CONSOLE_HOOK_POLL_MS (25000), AGENT_CONSOLE_SPOOL_DIR, AGENT_CONSOLE_MAX_PAYLOAD_BYTES (16384),
  AGENT_CONSOLE_MAX_SPOOL_BYTES (4194304)
";

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {
            hook_mode(None);
            std::process::exit(0);
        }
        Some("--hold-secs") => {
            hook_mode(args.get(1).and_then(|s| s.parse().ok()));
            std::process::exit(0);
        }
        Some("--inbox") => std::process::exit(inbox_mode()),
        Some(cmd @ ("install" | "uninstall")) => {
            if let Err(e) = settings_cmd(cmd == "install", &args[1..]) {
                eprintln!("agent-console-hook {cmd}: {e}");
                std::process::exit(1);
            }
        }
        Some("-h" | "--help" | "help") => print!("{USAGE}"),
        Some("-V" | "--version") => println!("agent-console-hook {}", env!("CARGO_PKG_VERSION")),
        Some(other) => {
            // Exit 1, never 2: Claude Code treats 2 as "block".
            eprintln!("agent-console-hook: unknown argument {other:?}\n\n{USAGE}");
            std::process::exit(1);
        }
    }
}

fn settings_cmd(install: bool, args: &[String]) -> Result<(), String> {
    let mut project: Option<PathBuf> = None;
    let mut print = false;
    let mut timeout = settings::DEFAULT_TIMEOUT_SECS;
    let mut hold_timeout = settings::DEFAULT_HOLD_TIMEOUT_SECS;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--project" => project = Some(PathBuf::from(it.next().ok_or("--project needs a directory")?)),
            "--user" => project = None,
            "--print" => print = true,
            "--timeout" => {
                timeout = it.next().and_then(|t| t.parse().ok()).ok_or("--timeout needs a number of seconds")?
            }
            "--hold-timeout" => {
                hold_timeout = it
                    .next()
                    .and_then(|t| t.parse().ok())
                    .filter(|t| *t >= 10)
                    .ok_or("--hold-timeout needs a number of seconds (at least 10)")?
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let home = home().ok_or("HOME is not set")?;
    let path = settings::settings_path(project.as_deref(), &home);
    let mut value = settings::read(&path).map_err(|e| e.to_string())?;
    if install {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
        let exe = exe.canonicalize().unwrap_or(exe);
        settings::install(&mut value, &exe.to_string_lossy(), timeout, hold_timeout).map_err(|e| e.to_string())?;
    } else {
        settings::uninstall(&mut value).map_err(|e| e.to_string())?;
    }
    let text = settings::render(&value);
    if print {
        print!("{text}");
        return Ok(());
    }
    settings::write_atomic(&path, &text).map_err(|e| e.to_string())?;
    eprintln!("agent-console-hook: {} {}", if install { "installed into" } else { "removed from" }, path.display());
    Ok(())
}

/// The hard deadline, whatever blocks (stdin never closed, DNS, a stalled disk): a watchdog thread
/// ends the process with exit 0 and nothing on stdout. A hold moves the deadline out.
#[derive(Clone)]
struct Watchdog {
    start: Instant,
    /// Milliseconds after `start`.
    deadline_ms: Arc<AtomicU64>,
}

impl Watchdog {
    fn arm(start: Instant, budget: Duration) -> Watchdog {
        let w = Watchdog { start, deadline_ms: Arc::new(AtomicU64::new(budget.as_millis() as u64)) };
        let t = w.clone();
        std::thread::spawn(move || loop {
            let due = t.start + Duration::from_millis(t.deadline_ms.load(Ordering::Relaxed));
            let now = Instant::now();
            if now >= due {
                std::process::exit(0);
            }
            std::thread::sleep((due - now).min(Duration::from_millis(200)));
        });
        w
    }

    fn extend_to(&self, deadline: Instant) {
        let ms = deadline.saturating_duration_since(self.start).as_millis() as u64;
        self.deadline_ms.fetch_max(ms, Ordering::Relaxed);
    }
}

fn read_stdin() -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin().lock().take(MAX_STDIN).read_to_end(&mut buf).ok()?;
    Some(buf)
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Random bytes from the kernel (a time-and-pid mix if that fails).
fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).is_ok();
    if !ok {
        let seed = now_ns() ^ (u64::from(std::process::id()) << 32);
        for (i, x) in b.iter_mut().enumerate() {
            *x = (seed.rotate_left(i as u32 * 7) >> (i % 8)) as u8;
        }
    }
    b
}

/// What an exchange with the collector gave.
enum Exchange {
    Answer(Answer),
    /// Refused for good (a 4xx other than 429): never retried.
    Refused(u16),
    /// Unreachable, 5xx/429, or an answer that failed the signature check: keep the call.
    Retry(String),
}

/// Talks to the collector for one hook process.
struct Collector {
    ep: Endpoint,
    cfg: Config,
    /// Decisions are believed only when signed with the token, or, without a token, from a
    /// collector on this machine.
    trusted: bool,
}

impl Collector {
    fn headers(&self, record_id: String, nonce: &str, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let mut h = vec![
            (wire::HDR_CLIENT, format!("agent-console-hook/{}", env!("CARGO_PKG_VERSION"))),
            (wire::HDR_RECORD_ID, record_id),
            (wire::HDR_NONCE, nonce.to_string()),
            (wire::HDR_MAX_PAYLOAD_BYTES, self.cfg.max_payload_bytes.to_string()),
        ];
        if let Some(a) = &self.cfg.agent_name {
            h.push((wire::HDR_AGENT_NAME, a.clone()));
        }
        if let Some(t) = &self.cfg.task_id {
            h.push((wire::HDR_TASK_ID, t.clone()));
        }
        h.extend_from_slice(extra);
        h
    }

    /// POST and check the answer's signature; the verified JSON body.
    fn exchange(
        &self,
        path: &str,
        headers: Vec<(&'static str, String)>,
        nonce: &str,
        body: &[u8],
        deadline: Instant,
    ) -> Result<Value, Exchange> {
        let r = client::post(&self.ep, path, self.cfg.token.as_deref(), "application/json", &headers, body, deadline)
            .map_err(retry)?;
        if r.retryable() {
            return Err(Exchange::Retry(format!("HTTP {}", r.status)));
        }
        if !(200..300).contains(&r.status) {
            return Err(Exchange::Refused(r.status));
        }
        let key = self.cfg.token.as_deref().unwrap_or("").as_bytes();
        let signed = r.header(wire::HDR_SIGNATURE).is_some_and(|s| wire::sign::verify(key, nonce, &r.body, s));
        if !signed || !self.trusted {
            return Err(Exchange::Retry("the answer is not signed by the configured collector".into()));
        }
        serde_json::from_slice(&r.body).map_err(|_| Exchange::Retry("the answer is not JSON".into()))
    }

    /// Send one hook call (a replay when `replay`), waiting up to `wait` for a held answer.
    fn hook(&self, call: &HookCall, replay: bool, wait: Duration, deadline: Instant) -> Exchange {
        let nonce = wire::hex(&random::<16>());
        let mut extra = vec![(wire::HDR_WAIT_MS, wait.as_millis().to_string())];
        if replay {
            extra.push((wire::HDR_REPLAY_TIME_NS, call.time_ns.to_string()));
        }
        let headers = self.headers(call.id_hex(), &nonce, &extra);
        match self.exchange(wire::HOOK_PATH, headers, &nonce, &call.json, deadline) {
            Ok(v) => Answer::from_json(&v).map_or(Exchange::Retry("not an answer".into()), Exchange::Answer),
            Err(e) => e,
        }
    }

    /// A legacy spooled OTLP request (protobuf to `/v1/logs` or `/v1/traces`).
    fn legacy(&self, r: &Record, deadline: Instant) -> Exchange {
        match client::post(
            &self.ep,
            r.kind.path(),
            self.cfg.token.as_deref(),
            "application/x-protobuf",
            &[],
            &r.body,
            deadline,
        ) {
            Ok(resp) if resp.retryable() => Exchange::Retry(format!("HTTP {}", resp.status)),
            Ok(resp) if (200..300).contains(&resp.status) => {
                Exchange::Answer(Answer { stored: true, ..Answer::default() })
            }
            Ok(resp) => Exchange::Refused(resp.status),
            Err(e) => retry(e),
        }
    }
}

/// A failed request is kept for later; a TLS failure (wrong CA, wrong name) is a configuration
/// problem that does not fix itself, so it is also said on stderr (Claude Code shows it with
/// `--verbose`/`--debug`).
fn retry(e: client::ClientError) -> Exchange {
    if matches!(e, client::ClientError::Tls(_)) {
        eprintln!("agent-console-hook: {e}; the call is kept in the spool");
    }
    Exchange::Retry(e.to_string())
}

/// What the hook answers when a hold must end without the collector's word (paused, collector
/// unreachable until the deadline): stop this step, never allow it.
fn local_fallback(event: &str) -> Option<Value> {
    let reason = "session paused (agent-console) and the collector could not be reached before the hook's deadline";
    match event {
        "PreToolUse" => Some(serde_json::json!({"hookSpecificOutput": {"hookEventName": "PreToolUse",
            "permissionDecision": "deny", "permissionDecisionReason": reason}})),
        "PostToolBatch" | "UserPromptSubmit" => Some(serde_json::json!({"continue": false, "stopReason": reason})),
        _ => None,
    }
}

fn print_output(event: &str, output: Option<&Value>) {
    let Some(clean) = output.and_then(|o| wire::sanitize_output(event, o)) else { return };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(clean.to_string().as_bytes()).and_then(|_| out.flush());
}

fn hook_mode(hold_override: Option<u64>) {
    let started = Instant::now();
    let mut cfg = Config::load(|k| std::env::var(k).ok(), home().as_deref());
    if let Some(s) = hold_override.filter(|s| *s > 0) {
        cfg.hold = Duration::from_secs(s);
    }
    let watchdog = Watchdog::arm(started, cfg.timeout);
    let deadline = started + cfg.timeout;
    // Spool writes are local and fast; keep a slice of the budget for them.
    let net_deadline = deadline - (cfg.timeout / 10).min(Duration::from_millis(50));
    let Some(stdin) = read_stdin() else { return };
    let input = translate::parse(&stdin);
    let (session, event) = match &input {
        Input::Event(ev) => (ev.session_id().map(str::to_string), ev.name.clone()),
        Input::Malformed { .. } => (None, String::new()),
    };
    let spool = Spool::new(cfg.spool_dir.clone(), cfg.max_spool_bytes);
    let call = HookCall { id: random::<16>(), time_ns: now_ns(), json: stdin };
    let hold_deadline = started + cfg.hold;
    let marked = session.as_deref().is_some_and(|s| spool.is_paused(s));
    if marked {
        watchdog.extend_to(hold_deadline + Duration::from_secs(2));
    }
    let ep = match Endpoint::parse_with_ca(&cfg.endpoint, cfg.ca_file.clone()) {
        Ok(ep) => ep,
        Err(e) => {
            eprintln!("agent-console-hook: {e}");
            let _ = spool.append(&[call.record()], deadline);
            return;
        }
    };
    let trusted = cfg.token.as_deref().is_some_and(|t| !t.is_empty()) || ep.is_loopback();
    if !trusted {
        eprintln!(
            "agent-console-hook: no AGENT_CONSOLE_TOKEN for a collector that is not on this machine: decisions ignored"
        );
    }
    let hold_for = cfg.hold;
    let c = Collector { ep, cfg, trusted };
    let mut reachable = true;

    // 1. Flush what earlier calls could not deliver, oldest first, within half the budget.
    if spool.has_pending() {
        let flush_until = started + c.cfg.timeout / 2;
        if let Ok(claim) = spool.claim(net_deadline) {
            let mut sent = 0;
            for r in &claim.records {
                if Instant::now() >= flush_until {
                    break;
                }
                let outcome = match HookCall::from_record(r) {
                    Some(old) => c.hook(&old, true, Duration::ZERO, net_deadline),
                    None if r.kind == Kind::Hook => Exchange::Refused(0),
                    None => c.legacy(r, net_deadline),
                };
                match outcome {
                    Exchange::Answer(a) if !a.stored => {
                        reachable = false;
                        break;
                    }
                    Exchange::Answer(_) => sent += 1,
                    Exchange::Refused(status) => {
                        eprintln!("agent-console-hook: collector refused a spooled call (HTTP {status}); dropped");
                        sent += 1;
                    }
                    Exchange::Retry(_) => {
                        reachable = false;
                        break;
                    }
                }
            }
            let unsent = claim.records[sent..].to_vec();
            let _ = spool.finish(claim, unsent, deadline);
        }
    }
    // 2. Make loss visible: records a full spool dropped, damaged records skipped.
    if reachable {
        if let Ok((dropped, damaged)) = spool.take_counts(net_deadline) {
            if dropped + damaged > 0 {
                let report = HookCall {
                    id: random::<16>(),
                    time_ns: now_ns(),
                    json: translate::dropped_event(dropped, damaged),
                };
                if !matches!(c.hook(&report, true, Duration::ZERO, net_deadline), Exchange::Answer(a) if a.stored) {
                    let _ = spool.append(&[report.record()], deadline);
                }
            }
        }
    }
    // 3. This call: answered at once, or held.
    let first = if reachable {
        c.hook(&call, false, Duration::ZERO, net_deadline)
    } else {
        Exchange::Retry("unreachable".into())
    };
    let mut stored = false;
    let fallback = match first {
        Exchange::Answer(a) if !a.hold => {
            finish(&spool, &call, session.as_deref(), &event, a, deadline);
            return;
        }
        Exchange::Answer(a) => {
            stored = a.stored;
            a.output.or_else(|| local_fallback(&event))
        }
        Exchange::Refused(status) => {
            if status != 400 {
                eprintln!("agent-console-hook: collector refused the call with HTTP {status}; dropped");
            }
            return;
        }
        Exchange::Retry(why) if !marked => {
            // Nothing known to be paused: fail open at once, keep the call for later.
            if let Err(e) = spool.append(&[call.record()], deadline) {
                eprintln!("agent-console-hook: {why}; {e}");
            }
            return;
        }
        Exchange::Retry(_) => local_fallback(&event),
    };
    // Held: keep asking until the hold ends or the deadline, then answer the fallback.
    if let Some(s) = session.as_deref() {
        let _ = spool.set_paused(s, true);
    }
    watchdog.extend_to(hold_deadline + Duration::from_secs(2));
    hold(&c, &spool, &call, session.as_deref(), &event, fallback, stored, hold_deadline.min(started + hold_for));
}

/// The long-poll loop of a held call.
#[allow(clippy::too_many_arguments)]
fn hold(
    c: &Collector,
    spool: &Spool,
    call: &HookCall,
    session: Option<&str>,
    event: &str,
    mut fallback: Option<Value>,
    mut stored: bool,
    until: Instant,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(200) {
            break;
        }
        let wait = c.cfg.poll.min(left.saturating_sub(Duration::from_millis(150)));
        match c.hook(call, false, wait, Instant::now() + wait + Duration::from_secs(5)) {
            Exchange::Answer(a) if a.hold => {
                stored |= a.stored;
                fallback = a.output.or(fallback);
                backoff = Duration::from_millis(100);
            }
            Exchange::Answer(mut a) => {
                a.stored |= stored;
                finish(spool, call, session, event, a, until + Duration::from_secs(1));
                return;
            }
            // The collector is restarting, refusing, or not who it should be: never "allow".
            Exchange::Refused(_) | Exchange::Retry(_) => {
                std::thread::sleep(backoff.min(until.saturating_duration_since(Instant::now())));
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    if !stored {
        let _ = spool.append(&[call.record()], Instant::now() + Duration::from_millis(500));
    }
    print_output(event, fallback.as_ref());
}

/// A final answer: keep the call if it was not stored, clear the paused marker, print, and end
/// the Claude Code process for a hard kill.
fn finish(spool: &Spool, call: &HookCall, session: Option<&str>, event: &str, a: Answer, deadline: Instant) {
    if !a.stored {
        let _ = spool.append(&[call.record()], deadline);
    }
    if let Some(s) = session {
        let _ = spool.set_paused(s, false);
    }
    print_output(event, a.output.as_ref());
    if a.signal.as_deref() == Some("TERM") {
        terminate_cli();
    }
}

/// A process's command name and parent.
fn proc_info(pid: u32) -> Option<(String, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let ppid = stat.get(close + 2..)?.split_whitespace().nth(1)?.parse().ok()?;
    Some((comm, ppid))
}

/// Hard kill: SIGTERM to the Claude Code process this hook runs under (its parent is `sh`, the
/// grandparent the CLI). Only a process that is Claude Code is signalled.
fn terminate_cli() {
    let mut pid = std::os::unix::process::parent_id();
    for _ in 0..3 {
        let Some((comm, ppid)) = proc_info(pid) else { break };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv0 =
            cmdline.split(|b| *b == 0).next().map(|a| String::from_utf8_lossy(a).to_string()).unwrap_or_default();
        let base = argv0.rsplit('/').next().unwrap_or("");
        if comm.starts_with("claude") || base.starts_with("claude") {
            let ok = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!("agent-console-hook: could not signal Claude Code (pid {pid})");
            }
            return;
        }
        pid = ppid;
        if pid <= 1 {
            break;
        }
    }
    eprintln!("agent-console-hook: hard kill asked, but no Claude Code process above this hook");
}

/// `--inbox`: wait for a message for this session and wake it (exit 2, message on stderr); exit 0
/// when released. Under `claude -p` (entrypoint `sdk-cli`) the CLI would wait for it: exit at once.
fn inbox_mode() -> i32 {
    if std::env::var("CLAUDE_CODE_ENTRYPOINT").is_ok_and(|e| e == "sdk-cli") {
        return 0;
    }
    let started = Instant::now();
    let cfg = Config::load(|k| std::env::var(k).ok(), home().as_deref());
    let until = started + cfg.hold;
    let _watchdog = Watchdog::arm(started, cfg.hold + Duration::from_secs(2));
    let Some(stdin) = read_stdin() else { return 0 };
    let Ok(ep) = Endpoint::parse_with_ca(&cfg.endpoint, cfg.ca_file.clone()) else { return 0 };
    let trusted = cfg.token.as_deref().is_some_and(|t| !t.is_empty()) || ep.is_loopback();
    if !trusted {
        return 0;
    }
    let c = Collector { ep, cfg, trusted };
    // Newest waiter wins: the id starts with this process's start time.
    let waiter = format!("{:016x}{}", now_ns(), wire::hex(&random::<8>()));
    let mut backoff = Duration::from_millis(200);
    while Instant::now() + Duration::from_millis(200) < until {
        let asked = Instant::now();
        let wait = c.cfg.poll.min(until.saturating_duration_since(asked));
        let nonce = wire::hex(&random::<16>());
        let headers = c.headers(waiter.clone(), &nonce, &[(wire::HDR_WAIT_MS, wait.as_millis().to_string())]);
        match c.exchange(wire::INBOX_PATH, headers, &nonce, &stdin, asked + wait + Duration::from_secs(5)) {
            Ok(v) => match InboxAnswer::from_json(&v) {
                Some(InboxAnswer::Release) => return 0,
                Some(InboxAnswer::Deliver(m)) => {
                    eprint!("{m}");
                    return 2;
                }
                Some(InboxAnswer::Kill) => {
                    terminate_cli();
                    return 0;
                }
                Some(InboxAnswer::Wait) | None => {
                    backoff = Duration::from_millis(200);
                    if asked.elapsed() < Duration::from_secs(1) {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            },
            Err(_) => {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    0
}
