//! `agent-console-openclaw`: command line, environment and the reconnect loop around
//! `gateway::run` (retry after `retryAfterMs`, capped exponential backoff, exit 2 on a bad token).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agent_console_openclaw::control::{self, InboxConfig, Link};
use agent_console_openclaw::gateway::{self, Outcome};
use agent_console_openclaw::{default_state_path, Config, Shim};

const USAGE: &str = "usage: agent-console-openclaw [--gateway ws://127.0.0.1:18789] [--token TOKEN] \
[--interval 5s] [--state FILE] [--endpoint http://127.0.0.1:4318] [--ca-file PEM] [--gateway-id NAME] [--inbox-wait 15s] [--no-control]
  token:    --token or OPENCLAW_GATEWAY_TOKEN
  endpoint: --endpoint or AGENT_CONSOLE_ENDPOINT (collector base URL, http:// or https://); AGENT_CONSOLE_TOKEN
            (bearer), AGENT_CONSOLE_TASK_ID (resource agent_console.task.id)
  ca-file:  --ca-file or AGENT_CONSOLE_CA_FILE: a private CA (PEM) trusted for an https:// endpoint
  control:  commands from the console arrive over a long-poll to <endpoint>/openclaw/inbox;
            --gateway-id or AGENT_CONSOLE_GATEWAY_ID names this gateway (default: its URL)";

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// `5`, `5s`, `0.5`, `250ms`.
fn parse_interval(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1.0)
    };
    let secs = num.trim().parse::<f64>().ok()? * scale;
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs.max(0.01)))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

fn parse_args() -> Result<(Config, Duration, Option<PathBuf>), String> {
    let mut cfg = Config {
        gateway: "ws://127.0.0.1:18789".into(),
        token: env("OPENCLAW_GATEWAY_TOKEN"),
        interval: Duration::from_secs(5),
        state_path: default_state_path(),
        endpoint: env("AGENT_CONSOLE_ENDPOINT").unwrap_or_else(|| "http://127.0.0.1:4318".into()),
        collector_token: env("AGENT_CONSOLE_TOKEN"),
        task_id: env("AGENT_CONSOLE_TASK_ID"),
        post_timeout: Duration::from_secs(2),
        gateway_id: env("AGENT_CONSOLE_GATEWAY_ID").unwrap_or_default(),
        control: true,
    };
    let mut inbox_wait = Duration::from_secs(15);
    let mut ca_file = env("AGENT_CONSOLE_CA_FILE").map(PathBuf::from);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--gateway" => cfg.gateway = value()?,
            "--token" => cfg.token = Some(value()?),
            "--interval" => {
                let v = value()?;
                cfg.interval = parse_interval(&v).ok_or_else(|| format!("bad --interval {v:?}"))?;
            }
            "--state" => cfg.state_path = PathBuf::from(value()?),
            "--endpoint" => cfg.endpoint = value()?,
            "--ca-file" => ca_file = Some(PathBuf::from(value()?)),
            "--gateway-id" => cfg.gateway_id = value()?,
            "--inbox-wait" => {
                let v = value()?;
                inbox_wait = parse_interval(&v).ok_or_else(|| format!("bad --inbox-wait {v:?}"))?;
            }
            "--no-control" => cfg.control = false,
            "-h" | "--help" => return Err(String::new()),
            "-V" | "--version" => {
                println!("agent-console-openclaw {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if cfg.gateway_id.is_empty() {
        cfg.gateway_id = cfg.gateway.clone();
    }
    Ok((cfg, inbox_wait, ca_file))
}

fn main() -> ExitCode {
    let (cfg, inbox_wait, ca_file) = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("agent-console-openclaw: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(if e.is_empty() { 0 } else { 64 });
        }
    };
    agent_console_openclaw::http::set_ca_file(ca_file);
    let mut link = if cfg.control {
        control::start(InboxConfig {
            endpoint: cfg.endpoint.clone(),
            token: cfg.collector_token.clone(),
            gateway_id: cfg.gateway_id.clone(),
            wait: inbox_wait,
        })
    } else {
        Link::disabled()
    };
    let mut shim = Shim::load(cfg);
    shim.flush(true);
    let mut backoff = Duration::from_millis(250);
    loop {
        match gateway::run(&mut shim, &mut link) {
            Outcome::BadToken(msg) => {
                eprintln!(
                    "agent-console-openclaw: the gateway rejected the token (AUTH_TOKEN_MISMATCH: {msg}); \
                     set --token or OPENCLAW_GATEWAY_TOKEN to the gateway's token"
                );
                let _ = shim.save();
                return ExitCode::from(2);
            }
            Outcome::Fatal(msg) => {
                eprintln!("agent-console-openclaw: {msg}");
                let _ = shim.save();
                return ExitCode::from(1);
            }
            Outcome::RetryAfter(d) => std::thread::sleep(d),
            Outcome::Disconnected { reason, ready } => {
                if ready {
                    backoff = Duration::from_millis(250);
                }
                eprintln!("agent-console-openclaw: gateway {reason}; reconnecting in {} ms", backoff.as_millis());
                shim.flush(false);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_interval("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_interval("0.5s"), Some(Duration::from_millis(500)));
        assert_eq!(parse_interval("-1"), None);
    }
}
