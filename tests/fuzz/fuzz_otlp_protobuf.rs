//! Fuzz target: OTLP/protobuf export bodies (the gRPC and HTTP receivers' decoder) through the
//! whole mapping: first byte = signal (traces, logs, metrics), the rest = the body. See
//! `src/collector.rs` for the properties checked.
#![cfg_attr(feature = "libfuzzer", no_main)]

use agent_console::receiver::decode::Encoding;
use agent_console_fuzz::collector::{decode_and_map, signal_of};

fn check(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else { return };
    decode_and_map(signal_of(sel), Encoding::Protobuf, body);
}

agent_console_fuzz::fuzz_target!(check);
