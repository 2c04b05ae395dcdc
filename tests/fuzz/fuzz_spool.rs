//! Fuzz target: the hook shim's spool decoder (`agent_console_hook::spool::decode`), which reads
//! whatever a killed, raced or tampered-with process left on disk. Properties checked on every
//! input: decoding never panics or loops; what it returns re-encodes and decodes to itself with no
//! damage; spooled hook calls parse without panicking.

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

#[cfg(feature = "afl")]
fn main() {
    afl::fuzz!(|data: &[u8]| check(data));
}

/// Replay: every file given, or every file in every directory given.
#[cfg(not(feature = "afl"))]
fn main() {
    let mut n = 0;
    for arg in std::env::args().skip(1) {
        let path = std::path::PathBuf::from(arg);
        let files: Vec<std::path::PathBuf> = if path.is_dir() {
            std::fs::read_dir(&path).into_iter().flatten().flatten().map(|e| e.path()).collect()
        } else {
            vec![path]
        };
        for f in files {
            let data = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            check(&data);
            n += 1;
        }
    }
    println!("fuzz_spool: {n} inputs replayed, no failure");
}
