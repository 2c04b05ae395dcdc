//! What DuckDB holds outside its buffer manager for the row groups an open database has written:
//! their columns' segments, statistics and block handles stay in memory (glibc's heap, not
//! `duckdb_memory()`, not under `memory_limit`) until the database is closed, so that memory grows
//! with the rows stored, in proportion to the number of row groups. The collector writes 8,192-row
//! groups by default (`--duckdb-row-group-size`, README "Operations"); this pins the measured
//! trade-off that README and BENCHMARKS.md ("row groups held in memory") state, against DuckDB's
//! default of 122,880. Counts are of allocations (`mallinfo2`), not time.
//!
//! `PROBE_ROWS` (default 1,500,000) and `PROBE_ROW_GROUP` (both sizes by default) reproduce the
//! BENCHMARKS figures: `PROBE_ROWS=4000000 cargo test --release --test duckdb_row_groups -- --nocapture`.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use duckdb::Connection;

/// glibc's heap in use (DuckDB allocates through it), in MiB.
fn malloc_mib() -> f64 {
    agent_console::malloc_arenas::in_use_bytes().expect("glibc") as f64 / 1048576.0
}

fn buffer_manager_mib(c: &Connection) -> f64 {
    c.query_row("SELECT sum(memory_usage_bytes)::DOUBLE FROM duckdb_memory()", [], |r| r.get::<_, f64>(0))
        .expect("duckdb_memory()")
        / 1048576.0
}

/// Store `rows` rows of a 23-column table shaped like `spans` (16 strings, 6 integers, one zstd
/// JSON text) in transactions of 5,000 with a checkpoint every 100, as the collector's writer
/// does at a moderate rate. Returns DuckDB's heap outside its buffer manager after a first
/// million rows and at the end (MiB), and the row groups stored.
fn store(row_group: u64, rows: u64) -> (f64, f64, i64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Connection::open_in_memory().expect("duckdb");
    c.execute_batch(&format!(
        "SET threads = 1; SET memory_limit = '256MB'; ATTACH '{}' AS db (ROW_GROUP_SIZE {row_group}); USE db;",
        dir.path().join("probe.duckdb").display()
    ))
    .expect("attach");
    let cols: Vec<String> =
        (0..16).map(|i| format!("s{i} VARCHAR")).chain((0..6).map(|i| format!("n{i} BIGINT"))).collect();
    c.execute_batch(&format!("CREATE TABLE t ({}, j VARCHAR USING COMPRESSION zstd)", cols.join(", ")))
        .expect("create");
    // A third of the strings unique (ids), the rest from a few dozen values (names, states).
    let values: Vec<String> =
        (0..16)
            .map(|i| {
                if i % 3 == 0 {
                    format!("md5((i * {i})::VARCHAR)[:16]")
                } else {
                    "'v' || (i % 37)::VARCHAR".to_string()
                }
            })
            .chain((0..6).map(|i| format!("i * {}", i + 1)))
            .collect();
    let outside = |c: &Connection| malloc_mib() - buffer_manager_mib(c);
    let txn = 5_000u64;
    let (mut done, mut at_million) = (0u64, None);
    for n in 1.. {
        if done >= rows {
            break;
        }
        c.execute_batch(&format!(
            "INSERT INTO t SELECT {}, repeat('x', 300) || i::VARCHAR FROM range({done}, {}) r(i)",
            values.join(", "),
            done + txn
        ))
        .expect("insert");
        done += txn;
        if n % 100 == 0 {
            c.execute_batch("CHECKPOINT").expect("checkpoint");
        }
        if done == 1_000_000 {
            at_million = Some(outside(&c));
        }
    }
    c.execute_batch("CHECKPOINT").expect("checkpoint");
    let end = outside(&c);
    let groups: i64 = c
        .query_row("SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('t')", [], |r| r.get(0))
        .expect("storage info");
    (at_million.expect("a million rows stored"), end, groups)
}

// One test: glibc's counters are the whole process's.
#[test]
fn small_row_groups_hold_more_of_duckdbs_heap_per_row_stored() {
    let rows: u64 = std::env::var("PROBE_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_500_000).max(1_500_000);
    let sizes: Vec<u64> = match std::env::var("PROBE_ROW_GROUP").ok().and_then(|v| v.parse().ok()) {
        Some(one) => vec![one],
        None => vec![8_192, 122_880],
    };
    let mut per_million = Vec::new();
    for size in sizes {
        let (first, end, groups) = store(size, rows);
        let slope = (end - first) / ((rows - 1_000_000) as f64 / 1e6);
        println!(
            "row groups of {size}: {groups} stored; outside the buffer manager {first:.1} MiB after 1M rows, {end:.1} after {rows}: {slope:.2} MiB per million rows"
        );
        per_million.push((size, slope));
    }
    if let [(8_192, small), (122_880, large)] = per_million[..] {
        // Measured: ~6.4 against ~0.6 MiB per million rows (BENCHMARKS.md).
        assert!(small > 3.0, "8,192-row groups: {small:.2} MiB per million rows");
        assert!(small > 3.0 * large.max(0.1), "8,192: {small:.2}, 122,880: {large:.2} MiB per million rows");
    }
}
