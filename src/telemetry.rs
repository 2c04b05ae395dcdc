//! The collector's own telemetry: `tracing` setup and the counters served at `/metrics` in the
//! Prometheus text format (received / rejected per signal, queue depth, commit latency).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Structured logs to stderr; `RUST_LOG` (or `--log`) filters.
pub fn init_tracing(filter: &str, json: bool) {
    let env = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt().with_env_filter(env).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// Which OTLP signal a counter is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Logs,
    Metrics,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }
    fn idx(self) -> usize {
        self as usize
    }
}

const COMMIT_BUCKETS_MS: [f64; 10] = [1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0, 5000.0];

#[derive(Default)]
pub struct Metrics {
    /// Records (spans / log records / data points) accepted, per signal.
    pub received: [AtomicU64; 3],
    /// Records refused inside accepted requests (partial success), per signal.
    pub rejected: [AtomicU64; 3],
    /// Requests refused whole, per signal, by reason: [bad request, too large, overloaded].
    pub refused: [[AtomicU64; 3]; 3],
    pub requests: [AtomicU64; 3],
    pub queue_depth: AtomicU64,
    pub commits: AtomicU64,
    pub commit_failures: AtomicU64,
    pub rows_written: AtomicU64,
    commit_us_sum: AtomicU64,
    commit_buckets: [AtomicU64; 10],
    pub queries: AtomicU64,
    /// Records DuckDB refused as data and the writer quarantined.
    pub quarantined: AtomicU64,
    /// Chunks of rows the writer inserted into an open transaction before its commit
    /// (`--commit-stream-mib`).
    pub streamed_chunks: AtomicU64,
    /// Times the writer attached the database file again (`store::reattach`).
    pub reattached: AtomicU64,
    /// SQL readers ended so that a refused checkpoint could run (`store::evict`).
    pub queries_evicted: AtomicU64,
    /// Late ancestor spans whose stored descendants the writer looked up (`store::fixups::adopt`).
    pub adopt_lookups: AtomicU64,
    /// ... and those skipped because the lookups' share of the writer's time was spent.
    pub adopt_skipped: AtomicU64,
    /// Exports that waited for a pipeline behind (`receiver::ingest` pacing), and for how long.
    paced: AtomicU64,
    paced_us: AtomicU64,
    /// Memory DuckDB's buffer manager holds (`duckdb_memory()`), as the writer last sampled it.
    pub duckdb_memory: AtomicU64,
}

/// Why a whole request was refused (index into `Metrics::refused`).
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    BadRequest = 0,
    TooLarge = 1,
    Overloaded = 2,
}

impl Metrics {
    pub fn accepted(&self, s: Signal, received: u64, rejected: u64) {
        self.requests[s.idx()].fetch_add(1, Relaxed);
        self.received[s.idx()].fetch_add(received, Relaxed);
        self.rejected[s.idx()].fetch_add(rejected, Relaxed);
    }

    pub fn refused(&self, s: Signal, why: Refusal) {
        self.requests[s.idx()].fetch_add(1, Relaxed);
        self.refused[s.idx()][why as usize].fetch_add(1, Relaxed);
    }

    pub fn paced(&self, waited: Duration) {
        self.paced.fetch_add(1, Relaxed);
        self.paced_us.fetch_add(waited.as_micros() as u64, Relaxed);
    }

    pub fn observe_commit(&self, d: Duration, rows: u64, ok: bool) {
        if !ok {
            self.commit_failures.fetch_add(1, Relaxed);
            return;
        }
        self.commits.fetch_add(1, Relaxed);
        self.rows_written.fetch_add(rows, Relaxed);
        self.commit_us_sum.fetch_add(d.as_micros() as u64, Relaxed);
        let ms = d.as_secs_f64() * 1e3;
        for (i, b) in COMMIT_BUCKETS_MS.iter().enumerate() {
            if ms <= *b {
                self.commit_buckets[i].fetch_add(1, Relaxed);
            }
        }
    }

    /// Prometheus text exposition format 0.0.4 (`log`: the ingest log's counters).
    pub fn render(&self, queue_depth: usize, log: Option<&crate::ingest_log::LogState>) -> String {
        let mut o = String::with_capacity(4096);
        let sigs = [Signal::Traces, Signal::Logs, Signal::Metrics];
        let _ = writeln!(o, "# HELP agent_console_received_total Records accepted (spans, log records, data points).");
        let _ = writeln!(o, "# TYPE agent_console_received_total counter");
        for s in sigs {
            let _ = writeln!(
                o,
                "agent_console_received_total{{signal=\"{}\"}} {}",
                s.as_str(),
                self.received[s.idx()].load(Relaxed)
            );
        }
        let _ = writeln!(
            o,
            "# HELP agent_console_rejected_total Records rejected inside accepted requests (partial success)."
        );
        let _ = writeln!(o, "# TYPE agent_console_rejected_total counter");
        for s in sigs {
            let _ = writeln!(
                o,
                "agent_console_rejected_total{{signal=\"{}\"}} {}",
                s.as_str(),
                self.rejected[s.idx()].load(Relaxed)
            );
        }
        let _ = writeln!(o, "# HELP agent_console_refused_requests_total Export requests refused whole.");
        let _ = writeln!(o, "# TYPE agent_console_refused_requests_total counter");
        for s in sigs {
            for (i, why) in ["bad_request", "too_large", "overloaded"].iter().enumerate() {
                let _ = writeln!(
                    o,
                    "agent_console_refused_requests_total{{signal=\"{}\",reason=\"{why}\"}} {}",
                    s.as_str(),
                    self.refused[s.idx()][i].load(Relaxed)
                );
            }
        }
        let _ = writeln!(o, "# HELP agent_console_requests_total Export requests received.");
        let _ = writeln!(o, "# TYPE agent_console_requests_total counter");
        for s in sigs {
            let _ = writeln!(
                o,
                "agent_console_requests_total{{signal=\"{}\"}} {}",
                s.as_str(),
                self.requests[s.idx()].load(Relaxed)
            );
        }
        let _ = writeln!(o, "# HELP agent_console_queue_depth Export requests waiting for the writer.");
        let _ = writeln!(o, "# TYPE agent_console_queue_depth gauge");
        let _ = writeln!(o, "agent_console_queue_depth {queue_depth}");
        let _ = writeln!(o, "# HELP agent_console_rows_written_total Rows committed to DuckDB (all tables).");
        let _ = writeln!(o, "# TYPE agent_console_rows_written_total counter");
        let _ = writeln!(o, "agent_console_rows_written_total {}", self.rows_written.load(Relaxed));
        let _ = writeln!(o, "# HELP agent_console_commit_failures_total Batches whose commit failed.");
        let _ = writeln!(o, "# TYPE agent_console_commit_failures_total counter");
        let _ = writeln!(o, "agent_console_commit_failures_total {}", self.commit_failures.load(Relaxed));
        let _ = writeln!(o, "# HELP agent_console_commit_seconds Batch commit latency.");
        let _ = writeln!(o, "# TYPE agent_console_commit_seconds histogram");
        for (i, b) in COMMIT_BUCKETS_MS.iter().enumerate() {
            let _ = writeln!(
                o,
                "agent_console_commit_seconds_bucket{{le=\"{}\"}} {}",
                b / 1e3,
                self.commit_buckets[i].load(Relaxed)
            );
        }
        let commits = self.commits.load(Relaxed);
        let _ = writeln!(o, "agent_console_commit_seconds_bucket{{le=\"+Inf\"}} {commits}");
        let _ = writeln!(o, "agent_console_commit_seconds_sum {}", self.commit_us_sum.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(o, "agent_console_commit_seconds_count {commits}");
        let counters: [(&str, &str, f64); 9] = [
            ("queries_total", "SQL queries run through the read API.", self.queries.load(Relaxed) as f64),
            (
                "queries_evicted_total",
                "SQL queries ended (503, retry) so that a checkpoint their snapshots held up could run.",
                self.queries_evicted.load(Relaxed) as f64,
            ),
            (
                "quarantined_total",
                "Records DuckDB refused as data (table quarantine).",
                self.quarantined.load(Relaxed) as f64,
            ),
            (
                "commit_streamed_chunks_total",
                "Chunks of rows inserted into an open DuckDB transaction before its commit (their memory freed).",
                self.streamed_chunks.load(Relaxed) as f64,
            ),
            (
                "duckdb_reattached_total",
                "Times the database file was attached again to free DuckDB's memory for the row groups written (--duckdb-reattach-mib).",
                self.reattached.load(Relaxed) as f64,
            ),
            (
                "adopt_lookups_total",
                "Late ancestor spans looked up among the stored spans.",
                self.adopt_lookups.load(Relaxed) as f64,
            ),
            (
                "adopt_skipped_total",
                "Late ancestor lookups skipped (their share of writer time spent).",
                self.adopt_skipped.load(Relaxed) as f64,
            ),
            (
                "paced_requests_total",
                "Exports that waited for the pipeline to catch up before mapping.",
                self.paced.load(Relaxed) as f64,
            ),
            ("paced_seconds_total", "Time exports spent waiting so.", self.paced_us.load(Relaxed) as f64 / 1e6),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(o, "# HELP agent_console_{name} {help}");
            let _ = writeln!(o, "# TYPE agent_console_{name} counter");
            let _ = writeln!(o, "agent_console_{name} {v}");
        }
        let _ = writeln!(
            o,
            "# HELP agent_console_duckdb_memory_bytes Memory held by DuckDB's buffer manager (its cache, un-checkpointed rows, query state), sampled after commits."
        );
        let _ = writeln!(o, "# TYPE agent_console_duckdb_memory_bytes gauge");
        let _ = writeln!(o, "agent_console_duckdb_memory_bytes {}", self.duckdb_memory.load(Relaxed));
        let _ = writeln!(
            o,
            "# HELP agent_console_heap_committed_bytes Memory the collector's own allocator (mimalloc) has committed, an upper bound of its heap (pages it has purged still count); DuckDB allocates through glibc and is not in it."
        );
        let _ = writeln!(o, "# TYPE agent_console_heap_committed_bytes gauge");
        let _ = writeln!(o, "agent_console_heap_committed_bytes {}", crate::heap::committed_bytes());
        if let Some(glibc) = crate::malloc_arenas::in_use_bytes() {
            let _ = writeln!(
                o,
                "# HELP agent_console_malloc_in_use_bytes Bytes in use in glibc's malloc, where DuckDB allocates: its buffer manager's blocks and, less agent_console_duckdb_memory_bytes, what it holds outside them, mostly the metadata of the row groups the open database has in memory (~6 bytes per row stored at 8,192-row groups, until the database is closed)."
            );
            let _ = writeln!(o, "# TYPE agent_console_malloc_in_use_bytes gauge");
            let _ = writeln!(o, "agent_console_malloc_in_use_bytes {glibc}");
        }
        if let Some(rss) = resident_bytes() {
            let _ =
                writeln!(o, "# HELP agent_console_process_resident_bytes Resident memory of the collector process.");
            let _ = writeln!(o, "# TYPE agent_console_process_resident_bytes gauge");
            let _ = writeln!(o, "agent_console_process_resident_bytes {rss}");
        }
        if let Some(log) = log {
            log.render(&mut o);
        }
        o
    }
}

/// This process's resident memory (`VmRSS` of `/proc/self/status`; `None` where there is no procfs).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
