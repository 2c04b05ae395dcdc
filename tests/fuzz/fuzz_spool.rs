//! Fuzz target: the hook shim's spool decoder (`agent_console_hook::spool::decode`), which reads
//! whatever a killed, raced or tampered-with process left on disk. Properties checked on every
//! input: decoding never panics or loops; what it returns re-encodes and decodes to itself with no
//! damage; spooled hook calls parse without panicking.
#![cfg_attr(feature = "libfuzzer", no_main)]

use agent_console_hook::spool::{decode, encode, HookCall};

fn check(data: &[u8]) {
    let d = decode(data);
    let again = decode(&encode(&d.records));
    assert_eq!(again.records, d.records, "re-encoded records decode to themselves");
    assert_eq!(again.damaged, 0, "a clean encoding has no damage");
    for r in &d.records {
        let _ = HookCall::from_record(r);
    }
}

agent_console_fuzz::fuzz_target!(check);
