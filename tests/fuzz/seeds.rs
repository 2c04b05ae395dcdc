//! Writes the seed corpus (`corpus/<target>/`) from the repository's captured fixtures
//! (`tests/fixtures/`: OTLP protobuf exports of Claude Code and agent frameworks, Claude Code
//! hook payloads) and the hand-written seeds in `seed-src/` (OTLP/JSON in the shapes SDKs send,
//! SQL that Grafana, psql and drivers send plus the hostile queries of issue 10). For the
//! sandbox target, the SQL is also serialized by DuckDB (`json_serialize_sql`) so the scanner
//! starts from real statement trees. Run from `tests/fuzz`:
//!   cargo run --release --features collector --bin seeds
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, selector: Option<u8>, body: &[u8]) {
    std::fs::create_dir_all(dir).expect("corpus dir");
    let mut out = Vec::with_capacity(body.len() + 1);
    out.extend(selector);
    out.extend_from_slice(body);
    std::fs::write(dir.join(name), out).expect("write seed");
}

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, ext, out);
        } else if p.extension().and_then(|x| x.to_str()) == Some(ext) {
            out.push(p);
        }
    }
}

fn main() {
    let fixtures = Path::new("../fixtures");
    let corpus = Path::new("corpus");
    let mut pbs = Vec::new();
    files(fixtures, "pb", &mut pbs);
    pbs.sort();
    for (i, p) in pbs.iter().enumerate() {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let sel = if name.starts_with("logs") {
            1
        } else if name.starts_with("metrics") {
            2
        } else {
            0
        };
        let bytes = std::fs::read(p).expect("fixture");
        write(&corpus.join("otlp_protobuf"), &format!("{i:03}-{name}"), Some(sel), &bytes);
    }
    for (sel, name) in [(0u8, "traces.json"), (1, "logs.json"), (2, "metrics.json")] {
        let bytes = std::fs::read(Path::new("seed-src").join(name)).expect("seed");
        write(&corpus.join("otlp_json"), name, Some(sel), &bytes);
    }
    let mut hooks = Vec::new();
    files(&fixtures.join("claude-code/hooks"), "json", &mut hooks);
    hooks.sort();
    for (i, p) in hooks.iter().enumerate() {
        let bytes = std::fs::read(p).expect("hook fixture");
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        write(&corpus.join("hook"), name, Some((i as u8 * 37) & 0x3f), &bytes);
    }
    let sql = std::fs::read_to_string(Path::new("seed-src").join("sql.txt")).expect("sql seeds");
    let db = duckdb::Connection::open_in_memory().expect("duckdb");
    for (i, line) in sql.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        write(&corpus.join("pgwire_sql"), &format!("{i:03}.sql"), None, line.as_bytes());
        write(&corpus.join("sql_vet"), &format!("{i:03}.sql"), Some(0), line.as_bytes());
        let ast: Result<String, _> =
            db.query_row("SELECT json_serialize_sql(?::VARCHAR)::VARCHAR", [line], |r| r.get(0));
        if let Ok(ast) = ast {
            write(&corpus.join("sql_vet"), &format!("{i:03}.json"), Some(1), ast.as_bytes());
        }
    }
    println!("seeds written under {}", corpus.display());
}
