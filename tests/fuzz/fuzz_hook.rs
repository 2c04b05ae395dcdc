//! Fuzz target: Claude Code hook JSON, as `POST /hooks/claude` and the hook shim translate it
//! (`agent_console_hook::translate`: parse, then the OTLP log record and tool span), then the
//! collector's mapping of that translation and its replay. First byte: options (payload cut-off,
//! agent name, whether a tool start time is known); the rest is the hook's stdin.
#![cfg_attr(feature = "libfuzzer", no_main)]

use agent_console::receiver::ingest::Payload;
use agent_console_fuzz::collector::map_and_replay;
use agent_console_hook::translate::{self, Input, Options};

fn check(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else { return };
    let input = translate::parse(body);
    if let Input::Event(ev) = &input {
        let _ = (ev.session_id(), ev.tool_use_id(), ev.duration_ms(), ev.starts_tool(), ev.ends_tool());
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = translate::minify(text);
    }
    let opts = Options {
        agent_name: (sel & 1 != 0).then(|| "fuzz-agent".to_string()),
        task_id: (sel & 2 != 0).then(|| "TASK-1".to_string()),
        max_payload_bytes: [256usize, 1024, 16 * 1024, 1024 * 1024][(sel >> 2) as usize % 4],
        transport: None,
        record_id: (sel & 16 != 0).then(|| "00112233445566778899aabbccddeeff".to_string()),
    };
    let now = 1_764_000_000_000_000_000u64;
    let start = (sel & 32 != 0).then_some(now - 1_500_000_000);
    let t = translate::translate(&input, &opts, now, start);
    map_and_replay(&Payload::Logs(t.logs));
    if let Some(tr) = t.traces {
        map_and_replay(&Payload::Traces(tr));
    }
}

agent_console_fuzz::fuzz_target!(check);
