//! Fuzz target: OTLP/JSON export bodies (`receiver::otlp_json`, our own decoder: hex ids,
//! string-encoded 64-bit integers, enum names, camelCase and snake_case keys) through the whole
//! mapping: first byte = signal, the rest = the body.
#![cfg_attr(feature = "libfuzzer", no_main)]

use agent_console::receiver::decode::Encoding;
use agent_console::receiver::otlp_json;
use agent_console_fuzz::collector::{decode_and_map, signal_of};

fn check(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else { return };
    let _ = otlp_json::sniff_signal(body);
    decode_and_map(signal_of(sel), Encoding::Json, body);
}

agent_console_fuzz::fuzz_target!(check);
