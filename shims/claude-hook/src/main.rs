//! `agent-console-hook`: run by Claude Code as a `command` hook (hook JSON on stdin -> OTLP/HTTP
//! protobuf to the collector, spooled when it is away), or `install` / `uninstall` to edit
//! Claude Code's settings.json. In hook mode it never harms the agent: a hard deadline, exit 0,
//! and nothing on stdout except a decision the collector sent back.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent_console_hook::client::{self, Endpoint};
use agent_console_hook::config::Config;
use agent_console_hook::settings;
use agent_console_hook::spool::{Kind, Record, Spool};
use agent_console_hook::translate::{self, Input};
use prost::Message;

/// Largest stdin we read; the payload attribute is cut far below this anyway.
const MAX_STDIN: u64 = 32 * 1024 * 1024;

const USAGE: &str = "\
agent-console-hook: Claude Code hooks -> agent-console (OTLP/HTTP)

USAGE:
  agent-console-hook                      hook mode: hook JSON on stdin (run by Claude Code)
  agent-console-hook install   [--project DIR | --user] [--print] [--timeout SECS]
  agent-console-hook uninstall [--project DIR | --user] [--print]

Configuration (environment first, then ~/.config/agent-console/hook.toml or $AGENT_CONSOLE_HOOK_CONFIG):
  AGENT_CONSOLE_ENDPOINT (http://127.0.0.1:4318), AGENT_CONSOLE_TOKEN, AGENT_CONSOLE_TASK_ID,
  AGENT_CONSOLE_AGENT_NAME, AGENT_CONSOLE_HOOK_TIMEOUT_MS (1000), AGENT_CONSOLE_SPOOL_DIR,
  AGENT_CONSOLE_MAX_PAYLOAD_BYTES (16384), AGENT_CONSOLE_MAX_SPOOL_BYTES (4194304)
";

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {
            hook_mode();
            std::process::exit(0);
        }
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
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--project" => project = Some(PathBuf::from(it.next().ok_or("--project needs a directory")?)),
            "--user" => project = None,
            "--print" => print = true,
            "--timeout" => {
                timeout = it.next().and_then(|t| t.parse().ok()).ok_or("--timeout needs a number of seconds")?
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
        settings::install(&mut value, &exe.to_string_lossy(), timeout).map_err(|e| e.to_string())?;
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
/// ends the process with exit 0 and nothing on stdout. The main thread never waits for it to start.
fn arm_watchdog(deadline: Instant) {
    std::thread::spawn(move || {
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        std::process::exit(0);
    });
}

fn read_stdin() -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin().lock().take(MAX_STDIN).read_to_end(&mut buf).ok()?;
    Some(buf)
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn hook_mode() {
    let started = Instant::now();
    let cfg = Config::load(|k| std::env::var(k).ok(), home().as_deref());
    let deadline = started + cfg.timeout;
    // Spool writes are local and fast; keep a slice of the budget for them.
    let net_deadline = deadline - (cfg.timeout / 10).min(Duration::from_millis(50));
    arm_watchdog(deadline);
    let Some(stdin) = read_stdin() else { return };
    let input = translate::parse(&stdin);
    let spool = Spool::new(cfg.spool_dir.clone(), cfg.max_spool_bytes);
    let now = now_ns();
    let tool_start = tool_timing(&input, &spool, now);
    let opts = cfg.options();
    let t = translate::translate(&input, &opts, now, tool_start);
    let mut current = vec![Record { kind: Kind::Logs, body: t.logs.encode_to_vec() }];
    if let Some(tr) = t.traces {
        current.push(Record { kind: Kind::Traces, body: tr.encode_to_vec() });
    }
    let ep = match Endpoint::parse(&cfg.endpoint) {
        Ok(ep) => ep,
        Err(e) => {
            eprintln!("agent-console-hook: {e}");
            let _ = spool.append(&current, deadline);
            return;
        }
    };
    let sender = Sender { ep: &ep, token: cfg.token.as_deref(), deadline: net_deadline };
    let mut reachable = true;

    // 1. Flush what earlier calls could not deliver, oldest first, within half the budget.
    if spool.has_pending() {
        let flush_until = started + cfg.timeout / 2;
        if let Ok(claim) = spool.claim(net_deadline) {
            let mut sent = 0;
            for r in &claim.records {
                if Instant::now() >= flush_until {
                    break;
                }
                match sender.send(r) {
                    Outcome::Done(_) => sent += 1,
                    Outcome::Retry => {
                        reachable = false;
                        break;
                    }
                }
            }
            let unsent = claim.records[sent..].to_vec();
            let _ = spool.finish(claim, unsent, deadline);
        }
    }
    // 2. Make loss visible: how many records a full spool dropped.
    if reachable {
        if let Ok(n @ 1..) = spool.take_dropped(net_deadline) {
            current
                .insert(0, Record { kind: Kind::Logs, body: translate::dropped_record(&opts, n, now).encode_to_vec() });
        }
    }
    // 3. This call's records; what does not get through is spooled.
    let mut decision = None;
    let mut to_spool = Vec::new();
    for r in current {
        if !reachable {
            to_spool.push(r);
            continue;
        }
        match sender.send(&r) {
            Outcome::Done(out) => decision = decision.or(out),
            Outcome::Retry => {
                reachable = false;
                to_spool.push(r);
            }
        }
    }
    if let Err(e) = spool.append(&to_spool, deadline) {
        eprintln!("agent-console-hook: {e}");
    }
    if let Some(json) = decision {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(json.as_bytes()).and_then(|_| out.flush());
    }
}

/// Start-time bookkeeping of tool spans: saved at PreToolUse, taken at the end event.
fn tool_timing(input: &Input, spool: &Spool, now: u64) -> Option<u64> {
    let Input::Event(ev) = input else { return None };
    if ev.name == agent_console_conventions::hook::SESSION_START
        || ev.name == agent_console_conventions::hook::SESSION_END
    {
        spool.sweep_tool_starts();
    }
    let id = translate::span_id(ev.tool_use_id()?);
    if ev.starts_tool() {
        if let Err(e) = spool.save_tool_start(&id, now) {
            eprintln!("agent-console-hook: {e}");
        }
        return None;
    }
    if ev.ends_tool() {
        // Always consume the saved start so no state file is left behind.
        return spool.take_tool_start(&id);
    }
    None
}

enum Outcome {
    /// Delivered (or refused for good: a 4xx other than 429 would never succeed). Carries the
    /// decision the collector returned, if any.
    Done(Option<String>),
    /// Unreachable, 5xx or 429: keep it.
    Retry,
}

struct Sender<'a> {
    ep: &'a Endpoint,
    token: Option<&'a str>,
    deadline: Instant,
}

impl Sender<'_> {
    fn send(&self, r: &Record) -> Outcome {
        match client::post(self.ep, r.kind.path(), self.token, &r.body, self.deadline) {
            Ok(resp) if resp.retryable() => Outcome::Retry,
            Ok(resp) if (200..300).contains(&resp.status) => Outcome::Done(resp.hook_output),
            Ok(resp) => {
                eprintln!("agent-console-hook: collector refused a record with HTTP {}; dropped", resp.status);
                Outcome::Done(None)
            }
            Err(_) => Outcome::Retry,
        }
    }
}
