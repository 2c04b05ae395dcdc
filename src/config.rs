//! Command line and configuration. Every flag has an `AGENT_CONSOLE_*` environment variable and
//! may also come from a TOML file (`--config`, keys are the flag names with `_`). Precedence:
//! command line > environment > file > default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::{Deserialize, Serialize};

use crate::store::{QueryLimits, StoreConfig};

#[derive(Debug, Parser)]
#[command(
    name = "agent-console",
    version,
    about = "Live OpenTelemetry collector and query API for fleets of AI agents"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at startup: the size of the `Serve` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the collector: OTLP gRPC + HTTP in, DuckDB store, SQL and REST out.
    Serve(ServeArgs),
    /// Write one table (optionally a time range) to a Parquet, CSV or Arrow file.
    Export(ExportArgs),
    /// Import history: `import claude-code [DIR]` (Claude Code transcripts).
    Import(crate::import::ImportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Table: spans, logs, metric_points, model_calls, tool_calls, sessions, agents or prices.
    #[arg(long, env = "AGENT_CONSOLE_EXPORT_TABLE")]
    pub table: String,
    /// Start of the range (inclusive): RFC 3339, a date, or Unix seconds/ms.
    #[arg(long, env = "AGENT_CONSOLE_EXPORT_FROM")]
    pub from: Option<String>,
    /// End of the range (exclusive).
    #[arg(long, env = "AGENT_CONSOLE_EXPORT_TO")]
    pub to: Option<String>,
    /// Directory the file is written to.
    #[arg(long, env = "AGENT_CONSOLE_EXPORT_OUT", default_value = ".")]
    pub out: PathBuf,
    /// parquet, csv or arrow.
    #[arg(long, env = "AGENT_CONSOLE_EXPORT_FORMAT", default_value = "parquet")]
    pub format: String,
    /// Database directory to read when no collector is running on it.
    #[arg(long, env = "AGENT_CONSOLE_DATA_DIR", default_value = "./agent-console-data")]
    pub data_dir: PathBuf,
    /// Export through a running collector instead (its HTTP address, e.g. http://127.0.0.1:4318).
    #[arg(long, env = "AGENT_CONSOLE_URL")]
    pub url: Option<String>,
    /// Read token of that collector, when it has one.
    #[arg(long, env = "AGENT_CONSOLE_READ_TOKEN", hide_env_values = true)]
    pub read_token: Option<String>,
}

#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct ServeArgs {
    /// Optional TOML file with any of these settings.
    #[arg(long, env = "AGENT_CONSOLE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Directory of the embedded DuckDB database.
    #[arg(long, env = "AGENT_CONSOLE_DATA_DIR", default_value = "./agent-console-data")]
    pub data_dir: PathBuf,
    /// OTLP/gRPC listen address (port 0 picks a free port).
    #[arg(long, env = "AGENT_CONSOLE_GRPC_ADDR", default_value = "127.0.0.1:4317")]
    pub grpc_addr: SocketAddr,
    /// OTLP/HTTP and query API listen address.
    #[arg(long, env = "AGENT_CONSOLE_HTTP_ADDR", default_value = "127.0.0.1:4318")]
    pub http_addr: SocketAddr,
    /// Largest export accepted, in bytes, after decompression.
    #[arg(long, env = "AGENT_CONSOLE_MAX_REQUEST_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Most records (spans, log records, data points) one export may carry (413 beyond).
    #[arg(long, env = "AGENT_CONSOLE_MAX_RECORDS_PER_REQUEST", default_value_t = 100_000)]
    pub max_records_per_request: u64,
    /// Memory that requests being decoded and mapped may take together, estimated from what they
    /// become (rows), before exports are refused (503 / UNAVAILABLE).
    #[arg(long, env = "AGENT_CONSOLE_MAX_INFLIGHT_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_inflight_bytes: usize,
    /// Exports that may wait for the ingest log's writer.
    #[arg(long, env = "AGENT_CONSOLE_QUEUE_CAPACITY", default_value_t = 4096)]
    pub queue_capacity: usize,
    /// How long an export may wait for memory or queue room before it is refused, in ms.
    #[arg(long, env = "AGENT_CONSOLE_QUEUE_WAIT_MS", default_value_t = 500)]
    pub queue_wait_ms: u64,
    /// Size of an ingest log segment file, in MiB (preallocated; at least 4x the request limit).
    #[arg(long, env = "AGENT_CONSOLE_INGEST_LOG_SEGMENT_MIB", default_value_t = 128)]
    pub ingest_log_segment_mib: u64,
    /// Acknowledged bytes the ingest log may hold that DuckDB has not committed yet, in MiB;
    /// beyond it exports are refused with 503 / UNAVAILABLE until DuckDB catches up.
    #[arg(long, env = "AGENT_CONSOLE_INGEST_LOG_MAX_PENDING_MIB", default_value_t = 1024)]
    pub ingest_log_max_pending_mib: u64,
    /// Mapped rows the log may hand to the pipeline in memory, in MiB; one budget with
    /// `--writer-queue-mib`. When the two together are within half of this of the budget,
    /// exports wait (up to 1 s) for the pipeline before they are mapped; past the budget records
    /// are read back from the log and mapped again.
    #[arg(long, env = "AGENT_CONSOLE_PIPELINE_HANDOFF_MIB", default_value_t = crate::pipeline::HANDOFF_BYTES >> 20)]
    pub pipeline_handoff_mib: u64,
    /// Processed rows waiting for the DuckDB writer, in MiB; one budget with
    /// `--pipeline-handoff-mib`: while a checkpoint pauses the writer the pipeline (and the live
    /// stream it feeds) keeps going until the two together are full.
    #[arg(long, env = "AGENT_CONSOLE_WRITER_QUEUE_MIB", default_value_t = crate::pipeline::WRITER_QUEUE_BYTES >> 20)]
    pub writer_queue_mib: u64,
    /// Start even when a record in the middle of the ingest log is damaged, skipping it (its
    /// data is lost; every skipped position is logged). Without it the collector refuses to start.
    #[arg(long, env = "AGENT_CONSOLE_INGEST_LOG_SKIP_DAMAGED", default_value_t = false)]
    pub ingest_log_skip_damaged: bool,
    /// Most rows in one DuckDB transaction.
    #[arg(long, env = "AGENT_CONSOLE_MAX_BATCH_ROWS", default_value_t = 100_000)]
    pub max_batch_rows: usize,
    /// Longest a logged record waits before its DuckDB transaction commits, in ms (how soon SQL
    /// sees it; `POST /api/flush` commits at once).
    #[arg(long, env = "AGENT_CONSOLE_COMMIT_MAX_DELAY_MS", default_value_t = 250)]
    pub commit_max_delay_ms: u64,
    /// Most rows in one DuckDB transaction by size, in MiB (as the pipeline estimates them).
    /// Every transaction also runs a fixed set of statements (session, agent, rollup and state
    /// upserts, the log position) whatever its size; under full load this bound, not the delay,
    /// ends transactions, and 64 against 32 takes ~6% off the writer's time per span (48 since
    /// rows are sized exactly: as many spans as 64 before). A transaction's rows stay in memory
    /// until it commits, as Arrow columns (BENCHMARKS.md, issue 11).
    #[arg(long, env = "AGENT_CONSOLE_COMMIT_MAX_MIB", default_value_t = DEFAULT_COMMIT_MAX_MIB)]
    pub commit_max_mib: u64,
    /// Insert an open transaction's rows into DuckDB whenever this many MiB of them wait, and
    /// free them, instead of holding all of them until the commit; 0 = hold them (the default).
    /// For an operator short of memory: at full rate 16 held ~35 MiB less (with the 24 MiB
    /// budgets, 8 held ~30 MiB less) for 1-6% of the throughput (BENCHMARKS.md, issue 11). A
    /// transaction that fails after some of its rows went in cannot be retried from memory: the
    /// collector restarts in-process and replays the ingest log (those records then committed
    /// whole).
    #[arg(long, env = "AGENT_CONSOLE_COMMIT_STREAM_MIB", default_value_t = DEFAULT_COMMIT_STREAM_MIB)]
    #[serde(default = "default_commit_stream_mib")]
    pub commit_stream_mib: u64,
    /// Set by an in-process restart after a streamed transaction failed: the records through
    /// this log position are committed whole, never streamed (so a record DuckDB refuses is
    /// found and quarantined one by one).
    #[arg(skip)]
    #[serde(skip)]
    pub careful_through: Option<u64>,
    /// Checkpoint DuckDB after this many MiB of ingest log were committed to it. DuckDB keeps no
    /// WAL (the ingest log is the redo log), so this bounds the replay after a crash; smaller
    /// costs throughput (each checkpoint rewrites the last, partly filled row group).
    #[arg(long, env = "AGENT_CONSOLE_CHECKPOINT_MIB", default_value_t = 256)]
    pub checkpoint_mib: u64,
    /// While a checkpoint writes the DuckDB file, write back what it has dirtied every this many
    /// ms, so the ingest log's syncs are not queued behind one large flush; 0 = off.
    #[arg(long, env = "AGENT_CONSOLE_CHECKPOINT_WRITEBACK_MS", default_value_t = 10)]
    pub checkpoint_writeback_ms: u64,
    /// DuckDB memory limit.
    #[arg(long, env = "AGENT_CONSOLE_DUCKDB_MEMORY_LIMIT", default_value = "2GB")]
    pub duckdb_memory_limit: String,
    /// DuckDB worker threads; 0 = one less than the cores, at least 1. With one thread DuckDB
    /// appends a transaction's rows straight into its storage (with more it stages them once more
    /// to keep their order across threads) and the writer hands no work to other threads: on two
    /// cores that stores ~10% more spans per second, and large ad-hoc scans take about twice as
    /// long when the box is otherwise idle (BENCHMARKS.md, issue 11).
    #[arg(long, env = "AGENT_CONSOLE_DUCKDB_THREADS", default_value_t = 0)]
    pub duckdb_threads: i64,
    /// Rows per DuckDB row group, a multiple of 2,048 (DuckDB's own default is 122,880). A table
    /// that gets at least this many rows in one transaction has them compressed and written at
    /// the commit, once; fewer are copied at the commit and compressed again by the next
    /// checkpoint. Under full load a transaction holds ~40,000 spans and ~24,000 model calls, so
    /// the default lets both take the single write (against 122,880: ~25% less writer time per
    /// span, ~55% more file per span, as smaller row groups compress worse; 4,096 was slower
    /// again; BENCHMARKS.md, issue 11).
    #[arg(long, env = "AGENT_CONSOLE_DUCKDB_ROW_GROUP_SIZE", default_value_t = DEFAULT_ROW_GROUP_SIZE, value_parser = parse_row_group_size)]
    #[serde(default = "default_row_group_size")]
    pub duckdb_row_group_size: u64,
    /// Detach and attach the database file again, right after a checkpoint, once the row groups
    /// written since it was attached hold about this many MiB of DuckDB's heap (0 = never).
    /// DuckDB keeps every row group it wrote or read in memory (segments, statistics, handles:
    /// ~46 KiB for a row group of 23 columns, outside its buffer manager and its memory limit)
    /// until the file is detached, so without this the collector's memory grows with the rows
    /// it stores (~6 MiB per million rows at 8,192-row groups). Attaching again takes 30-140 ms at full
    /// rate (plus up to 250 ms while readers finish) and empties DuckDB's cache; readers running then finish first or are evicted (503 /
    /// SQLSTATE 40001, retried) (BENCHMARKS.md, issue 11).
    #[arg(long, env = "AGENT_CONSOLE_DUCKDB_REATTACH_MIB", default_value_t = DEFAULT_REATTACH_MIB)]
    #[serde(default = "default_reattach_mib")]
    pub duckdb_reattach_mib: u64,
    /// How many nice steps below the collector's own priority its bulk threads run (decoding,
    /// SQL readers, the writer's helpers), and half as many for the ingest log, the pipeline and
    /// the async runtime (0 = all the same). The DuckDB writer keeps the collector's priority: it
    /// is the one serial stage every stored row passes through and the rest is paced to it; at
    /// the same priority it spent ~20% of its time queued for a core behind them. Readers and
    /// decoding share a tier, so they stay as fair to one another as at 0. While the writer is
    /// behind, the latency tier also stops preempting it when it wakes (`SCHED_BATCH`). Applied by
    /// `agent-console serve` at start on a box with two cores or more (`priority.rs`;
    /// BENCHMARKS.md, issue 11).
    #[arg(long, env = "AGENT_CONSOLE_BACKGROUND_NICE", default_value_t = DEFAULT_BACKGROUND_NICE, value_parser = clap::value_parser!(i32).range(0..=19))]
    #[serde(default = "default_background_nice")]
    pub background_nice: i32,
    /// How many more nice steps below the other background threads (`--background-nice`) the
    /// threads that decode and map bulk exports run (0 = same). With readers and live subscribers
    /// on the same cores a lower priority for decoding alone lets them starve ingest, hence 0
    /// by default (BENCHMARKS.md, issue 11).
    #[arg(long, env = "AGENT_CONSOLE_INGEST_NICE", default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub ingest_nice: i32,
    /// How long the pages of freed heap memory wait before they go back to the system, in ms
    /// (mimalloc's `purge_delay`; its own default is 1000). Shorter holds less memory for more
    /// time faulting pages in again: at full rate 250 held ~28 MiB less than 1000 for ~1.5% more
    /// CPU per span; 100 cost ~5%, 0 12-20% (BENCHMARKS.md, issue 11).
    /// `MIMALLOC_PURGE_DELAY`, when set, wins. Applied by `agent-console serve` at start.
    #[arg(long, env = "AGENT_CONSOLE_HEAP_PURGE_MS", default_value_t = crate::heap::DEFAULT_PURGE_MS)]
    #[serde(default = "default_heap_purge_ms")]
    pub heap_purge_ms: u32,
    /// Let the heap use transparent huge pages (mimalloc asks for them). Off by default: a
    /// 2 MiB page stays resident while any of it is in use, and without them the collector held
    /// ~43 MiB less at full rate for no throughput measured (BENCHMARKS.md, issue 11).
    /// `MIMALLOC_ALLOW_THP`, when set, wins. Applied by `agent-console serve` at start.
    #[arg(long, env = "AGENT_CONSOLE_HEAP_HUGE_PAGES", default_value_t = false)]
    #[serde(default)]
    pub heap_huge_pages: bool,
    /// How many glibc malloc arenas DuckDB's allocations may spread over (0 = one per core, at
    /// least 2). glibc's own default is 8 per core; each arena keeps the memory freed into it, so
    /// with readers on their own threads the process held ~60-90 MiB more for the same work
    /// (short soaks, BENCHMARKS.md, issue 11). Applied by `agent-console serve` at start.
    #[arg(long, env = "AGENT_CONSOLE_MALLOC_ARENA_MAX", default_value_t = 0)]
    #[serde(default)]
    pub malloc_arena_max: usize,
    /// glibc's mmap threshold for DuckDB's allocations, in KiB (0 = glibc's own, which slides up
    /// to the largest block freed). Fixed (e.g. 128), DuckDB's freed 256 KiB blocks go back to the
    /// system rather than stay in an arena: ~35 MiB less resident at full rate, for 10-15% of the
    /// throughput (the writer maps and faults in every block; BENCHMARKS.md, issue 11). Applied
    /// by `agent-console serve` at start.
    #[arg(long, env = "AGENT_CONSOLE_MALLOC_MMAP_THRESHOLD_KIB", default_value_t = DEFAULT_MMAP_THRESHOLD_KIB)]
    #[serde(default = "default_mmap_threshold_kib")]
    pub malloc_mmap_threshold_kib: usize,
    /// SQL API timeout, in ms.
    #[arg(long, env = "AGENT_CONSOLE_QUERY_TIMEOUT_MS", default_value_t = 30_000)]
    pub query_timeout_ms: u64,
    /// Most rows a SQL API answer carries.
    #[arg(long, env = "AGENT_CONSOLE_QUERY_MAX_ROWS", default_value_t = 100_000)]
    pub query_max_rows: usize,
    /// Bearer token required on OTLP ingest (HTTP and gRPC) when set.
    #[arg(long, env = "AGENT_CONSOLE_INGEST_TOKEN", hide_env_values = true)]
    pub ingest_token: Option<String>,
    /// Bearer token required on the query API (`/api/*`) when set.
    #[arg(long, env = "AGENT_CONSOLE_READ_TOKEN", hide_env_values = true)]
    pub read_token: Option<String>,
    /// Bearer token required on every state-changing route (agent commands, tasks, alert rules,
    /// re-pricing) when set. Separate from the read token, which Grafana and dashboards hold.
    #[arg(long, env = "AGENT_CONSOLE_CONTROL_TOKEN", hide_env_values = true)]
    pub control_token: Option<String>,
    /// Extra or overriding model prices (TOML, same format as the embedded table).
    #[arg(long, env = "AGENT_CONSOLE_PRICES")]
    pub prices: Option<PathBuf>,
    /// Postgres wire protocol listen address (read-only SQL for psql, drivers and Grafana).
    #[arg(long, env = "AGENT_CONSOLE_PG_ADDR", default_value = "127.0.0.1:5433")]
    pub pg_addr: SocketAddr,
    /// PEM certificate chain for TLS on the Postgres port (with `--pg-tls-key`).
    #[arg(long, env = "AGENT_CONSOLE_PG_TLS_CERT", requires = "pg_tls_key")]
    pub pg_tls_cert: Option<PathBuf>,
    /// PEM private key for TLS on the Postgres port (with `--pg-tls-cert`).
    #[arg(long, env = "AGENT_CONSOLE_PG_TLS_KEY", requires = "pg_tls_cert")]
    pub pg_tls_key: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax); RUST_LOG wins when set.
    #[arg(long, env = "AGENT_CONSOLE_LOG", default_value = "info")]
    pub log: String,
    /// Log as JSON lines.
    #[arg(long, env = "AGENT_CONSOLE_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
    /// Longest graceful shutdown, in seconds: connections still open then (HTTP requests,
    /// gRPC streams, Postgres sessions) are dropped; the write queue is still drained.
    #[arg(long, env = "AGENT_CONSOLE_SHUTDOWN_TIMEOUT_SECS", default_value_t = 10)]
    pub shutdown_timeout_secs: u64,
    /// Live stream messages kept for resuming with `Last-Event-ID` / `?since=`.
    #[arg(long, env = "AGENT_CONSOLE_LIVE_RETENTION", default_value_t = 20_000)]
    pub live_retention: usize,
    /// Live stream messages a subscriber may fall behind before it gets a `gap`.
    #[arg(long, env = "AGENT_CONSOLE_LIVE_BUFFER", default_value_t = 1024)]
    pub live_buffer: usize,
    /// Seconds between live stream `heartbeat` messages.
    #[arg(long, env = "AGENT_CONSOLE_LIVE_HEARTBEAT_SECS", default_value_t = 15)]
    pub live_heartbeat_secs: u64,
    /// Seconds without activity after which a running session (nothing in flight) is `idle`.
    #[arg(long, env = "AGENT_CONSOLE_SESSION_IDLE_SECS", default_value_t = 60)]
    pub session_idle_secs: u64,
    /// Seconds without activity after which a running session is flagged `stuck`.
    #[arg(long, env = "AGENT_CONSOLE_SESSION_STUCK_SECS", default_value_t = 300)]
    pub session_stuck_secs: u64,
    /// Seconds without activity after which a session is `finished`.
    #[arg(long, env = "AGENT_CONSOLE_SESSION_FINISH_SECS", default_value_t = 1800)]
    pub session_finish_secs: u64,
    /// Development only: serve the web console's files from this directory (`src/console/ui`)
    /// instead of the copy embedded in the binary.
    #[arg(long, env = "AGENT_CONSOLE_CONSOLE_DIR")]
    pub console_dir: Option<PathBuf>,
    /// Most bytes of one SQL answer (JSON rows, Postgres rows); past it the answer is truncated.
    #[arg(long, env = "AGENT_CONSOLE_QUERY_MAX_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub query_max_bytes: usize,
    /// Seconds a streamed answer (CSV/Arrow/Parquet, export, Postgres rows) waits for a client
    /// that stopped reading before the query is cancelled and its transaction closed.
    #[arg(long, env = "AGENT_CONSOLE_QUERY_SEND_TIMEOUT_SECS", default_value_t = 30)]
    pub query_send_timeout_secs: u64,
    /// Most open Postgres wire connections (more are refused with SQLSTATE 53300).
    #[arg(long, env = "AGENT_CONSOLE_PG_MAX_CONNECTIONS", default_value_t = 64)]
    pub pg_max_connections: usize,
    /// Seconds a Postgres session may wait for its next message before it is closed (57P05).
    #[arg(long, env = "AGENT_CONSOLE_PG_IDLE_TIMEOUT_SECS", default_value_t = 600)]
    pub pg_idle_timeout_secs: u64,
    /// Seconds a client may take to send an HTTP request head (slowloris); also how long an idle
    /// keep-alive connection stays open.
    #[arg(long, env = "AGENT_CONSOLE_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub http_header_timeout_secs: u64,
    /// Seconds an HTTP request body may deliver nothing before the request fails.
    #[arg(long, env = "AGENT_CONSOLE_HTTP_BODY_IDLE_TIMEOUT_SECS", default_value_t = 30)]
    pub http_body_idle_timeout_secs: u64,
    /// Most open HTTP connections; the next one is answered 503 with Retry-After and closed.
    #[arg(long, env = "AGENT_CONSOLE_HTTP_MAX_CONNECTIONS", default_value_t = 1024)]
    pub http_max_connections: usize,
    /// Most open OTLP/gRPC connections; the next one is closed at once (clients retry).
    #[arg(long, env = "AGENT_CONSOLE_GRPC_MAX_CONNECTIONS", default_value_t = 1024)]
    pub grpc_max_connections: usize,
    /// Seconds a new gRPC connection may take to send the HTTP/2 preface.
    #[arg(long, env = "AGENT_CONSOLE_GRPC_HANDSHAKE_TIMEOUT_SECS", default_value_t = 10)]
    pub grpc_handshake_timeout_secs: u64,
    /// Seconds nothing may arrive on a gRPC connection (keepalive pings are answered within it).
    #[arg(long, env = "AGENT_CONSOLE_GRPC_IDLE_TIMEOUT_SECS", default_value_t = 300)]
    pub grpc_idle_timeout_secs: u64,
    /// Seconds between the gRPC server's HTTP/2 keepalive pings; one not acknowledged within a
    /// third of that (at least 1 s) closes the connection.
    #[arg(long, env = "AGENT_CONSOLE_GRPC_KEEPALIVE_SECS", default_value_t = 60)]
    pub grpc_keepalive_secs: u64,
    /// Seconds one gRPC call (an Export, its body included) may take.
    #[arg(long, env = "AGENT_CONSOLE_GRPC_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub grpc_request_timeout_secs: u64,
    /// Most concurrent gRPC streams (calls) per connection.
    #[arg(long, env = "AGENT_CONSOLE_GRPC_MAX_CONCURRENT_STREAMS", default_value_t = 100)]
    pub grpc_max_concurrent_streams: u32,
    /// Seconds after which a gRPC connection is asked to go away (GOAWAY: calls in flight
    /// finish, clients reconnect), so no peer holds one forever.
    #[arg(long, env = "AGENT_CONSOLE_GRPC_MAX_CONNECTION_AGE_SECS", default_value_t = 1800)]
    pub grpc_max_connection_age_secs: u64,
    /// Host names the HTTP port answers to besides IP literals and localhost (DNS rebinding
    /// guard), comma separated; `*.example.com` allows subdomains, `*` allows any. Browser pages
    /// served from these hosts may also make state-changing requests and open WebSockets.
    #[arg(long, env = "AGENT_CONSOLE_ALLOWED_HOSTS", value_delimiter = ',')]
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Start on a non-loopback address even though a surface listening there has no token.
    #[arg(long, env = "AGENT_CONSOLE_INSECURE_NO_AUTH", default_value_t = false)]
    #[serde(default)]
    pub insecure_no_auth: bool,
    /// Bytes (MiB) of live stream messages kept for resuming, besides the message count.
    #[arg(long, env = "AGENT_CONSOLE_LIVE_RETENTION_MIB", default_value_t = DEFAULT_LIVE_RETENTION_MIB)]
    #[serde(default = "default_live_retention_mib")]
    pub live_retention_mib: u64,
    /// Link sessions to tasks by a regex over the git branch / working directory they report
    /// (the first capture group, else the match, is the task id), e.g. `([A-Z]+-[0-9]+)`. Off when unset.
    #[arg(long, env = "AGENT_CONSOLE_TASK_LINK_PATTERN")]
    pub task_link_pattern: Option<String>,
    /// A TOML file of alert rules (`[[rule]]` tables; see README "Alerts").
    #[arg(long, env = "AGENT_CONSOLE_ALERTS_FILE")]
    pub alerts_file: Option<PathBuf>,
    /// Key of the HMAC-SHA256 signature on alert webhooks (`X-Agent-Console-Signature`).
    #[arg(long, env = "AGENT_CONSOLE_ALERT_WEBHOOK_SECRET", hide_env_values = true)]
    pub alert_webhook_secret: Option<String>,
    /// Control plane settings (approval policy, named control tokens, holds).
    #[command(flatten)]
    #[serde(flatten)]
    pub control: crate::control::args::ControlArgs,
}

/// Errors of configuration loading.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl ServeArgs {
    /// Defaults for every setting (what `serve` with no flags uses), for tests and embedding.
    pub fn defaults() -> Self {
        let m = Cli::command().try_get_matches_from(["agent-console", "serve"]);
        match m.ok().and_then(|m| m.subcommand_matches("serve").cloned()) {
            Some(sm) => ServeArgs::from_arg_matches(&sm).unwrap_or_else(|_| unreachable_defaults()),
            None => unreachable_defaults(),
        }
    }

    /// Overlay a TOML file's keys on settings that came from defaults only.
    pub fn apply_file(mut self, matches: &ArgMatches) -> Result<Self, ConfigError> {
        let Some(path) = self.config.clone() else { return Ok(self) };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
        let file: toml::Table =
            toml::from_str(&text).map_err(|e| ConfigError::Invalid { path: path.clone(), message: e.to_string() })?;
        let mut current = serde_json::to_value(&self)
            .map_err(|e| ConfigError::Invalid { path: path.clone(), message: e.to_string() })?;
        let obj = current
            .as_object_mut()
            .ok_or_else(|| ConfigError::Invalid { path: path.clone(), message: "settings are not a table".into() })?;
        for (key, value) in file {
            let key = key.replace('-', "_");
            let secret = matches!(key.as_str(), "ingest_token" | "read_token" | "control_token" | "control_tokens");
            if !obj.contains_key(&key) && !secret {
                return Err(ConfigError::Invalid { path: path.clone(), message: format!("unknown setting {key:?}") });
            }
            let from_user =
                matches!(matches.value_source(&key), Some(ValueSource::CommandLine) | Some(ValueSource::EnvVariable));
            if !from_user {
                let v = serde_json::to_value(&value)
                    .map_err(|e| ConfigError::Invalid { path: path.clone(), message: e.to_string() })?;
                obj.insert(key, v);
            }
        }
        let config = self.config.take();
        let mut merged: ServeArgs = serde_json::from_value(current)
            .map_err(|e| ConfigError::Invalid { path: path.clone(), message: e.to_string() })?;
        merged.config = config;
        Ok(merged)
    }

    /// Limits of the ingest path.
    pub fn ingest_limits(&self) -> crate::receiver::ingest::IngestLimits {
        crate::receiver::ingest::IngestLimits {
            max_records: self.max_records_per_request.max(1),
            max_inflight_bytes: self.max_inflight_bytes.max(self.max_request_bytes),
            wait: Duration::from_millis(self.queue_wait_ms),
        }
    }

    pub fn store_config(&self) -> StoreConfig {
        let mut log = crate::ingest_log::LogConfig::new(self.data_dir.join("log"));
        // A segment holds at least 4 of the largest records.
        let min_segment = (self.max_request_bytes as u64).saturating_mul(4).max(4 << 20);
        log.segment_bytes = (self.ingest_log_segment_mib << 20).max(min_segment);
        log.max_pending_bytes = (self.ingest_log_max_pending_mib << 20).max(self.max_request_bytes as u64);
        log.queue_capacity = self.queue_capacity.max(1);
        log.queue_wait = Duration::from_millis(self.queue_wait_ms);
        log.skip_damaged = self.ingest_log_skip_damaged;
        StoreConfig {
            data_dir: self.data_dir.clone(),
            memory_limit: self.duckdb_memory_limit.clone(),
            threads: duckdb_threads(self.duckdb_threads),
            row_group_size: self.duckdb_row_group_size,
            reattach_bytes: self.duckdb_reattach_mib << 20,
            log,
            handoff_bytes: (self.pipeline_handoff_mib << 20).max(1 << 20),
            writer_queue_bytes: (self.writer_queue_mib << 20).max(1 << 20),
            commit_max_rows: self.max_batch_rows.max(1),
            commit_max_delay: Duration::from_millis(self.commit_max_delay_ms.max(1)),
            commit_max_bytes: (self.commit_max_mib << 20).max(1 << 20),
            commit_stream_bytes: self.commit_stream_mib << 20,
            careful_through: self.careful_through,
            checkpoint_bytes: self.checkpoint_mib.max(1) << 20,
            checkpoint_writeback: (self.checkpoint_writeback_ms > 0)
                .then(|| Duration::from_millis(self.checkpoint_writeback_ms)),
            sessions: crate::sessions::TrackerConfig {
                idle_after_us: self.session_idle_secs.max(1) as i64 * 1_000_000,
                stuck_after_us: self.session_stuck_secs.max(1) as i64 * 1_000_000,
                finish_after_us: self.session_finish_secs.max(1) as i64 * 1_000_000,
                ..Default::default()
            },
            tasks: crate::tasks::TaskConfig { link_pattern: self.task_link_pattern.clone().filter(|p| !p.is_empty()) },
            query: QueryLimits {
                timeout: Duration::from_millis(self.query_timeout_ms.max(1)),
                max_rows: self.query_max_rows.max(1),
                max_result_bytes: self.query_max_bytes.max(1024),
                send_timeout: Duration::from_secs(self.query_send_timeout_secs.max(1)),
                pg_max_connections: self.pg_max_connections.max(1),
                pg_idle_timeout: Duration::from_secs(self.pg_idle_timeout_secs.max(1)),
                ..QueryLimits::default()
            },
        }
    }
}

/// `--duckdb-threads`: as given, or for 0 one less than the cores (at least 1).
fn duckdb_threads(flag: i64) -> i64 {
    if flag > 0 {
        return flag;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    i64::try_from(cores.saturating_sub(1).max(1)).unwrap_or(1)
}

/// `--duckdb-row-group-size` when not given.
pub const DEFAULT_ROW_GROUP_SIZE: u64 = 8_192;

fn default_row_group_size() -> u64 {
    DEFAULT_ROW_GROUP_SIZE
}

/// `--duckdb-reattach-mib` when not given.
pub const DEFAULT_REATTACH_MIB: u64 = 64;

fn default_reattach_mib() -> u64 {
    DEFAULT_REATTACH_MIB
}

/// `--malloc-mmap-threshold-kib` when not given.
pub const DEFAULT_MMAP_THRESHOLD_KIB: usize = 0;

fn default_mmap_threshold_kib() -> usize {
    DEFAULT_MMAP_THRESHOLD_KIB
}

/// `--commit-max-mib` when not given.
pub const DEFAULT_COMMIT_MAX_MIB: u64 = 48;

/// `--commit-stream-mib` when not given.
pub const DEFAULT_COMMIT_STREAM_MIB: u64 = 0;

fn default_commit_stream_mib() -> u64 {
    DEFAULT_COMMIT_STREAM_MIB
}

/// `--background-nice` when not given.
pub const DEFAULT_BACKGROUND_NICE: i32 = 10;

fn default_background_nice() -> i32 {
    DEFAULT_BACKGROUND_NICE
}

fn default_heap_purge_ms() -> u32 {
    crate::heap::DEFAULT_PURGE_MS
}

/// A row group size DuckDB accepts: a positive multiple of its vector size (2,048), and not
/// beyond 1,048,576 rows (a row group is built in memory before it is written).
fn parse_row_group_size(s: &str) -> Result<u64, String> {
    let n: u64 = s.trim().parse().map_err(|e| format!("{e}"))?;
    if n == 0 || !n.is_multiple_of(2048) || n > 1 << 20 {
        return Err(format!("{n} is not a multiple of 2048 between 2048 and 1048576"));
    }
    Ok(n)
}

fn default_live_retention_mib() -> u64 {
    DEFAULT_LIVE_RETENTION_MIB
}

/// `--live-retention-mib` when not given.
pub const DEFAULT_LIVE_RETENTION_MIB: u64 = 48;

fn unreachable_defaults() -> ServeArgs {
    ServeArgs {
        config: None,
        data_dir: PathBuf::from("./agent-console-data"),
        grpc_addr: SocketAddr::from(([127, 0, 0, 1], 4317)),
        http_addr: SocketAddr::from(([127, 0, 0, 1], 4318)),
        max_request_bytes: 16 * 1024 * 1024,
        max_records_per_request: 100_000,
        max_inflight_bytes: 256 * 1024 * 1024,
        queue_capacity: 4096,
        queue_wait_ms: 500,
        ingest_log_segment_mib: 128,
        ingest_log_max_pending_mib: 1024,
        pipeline_handoff_mib: crate::pipeline::HANDOFF_BYTES >> 20,
        writer_queue_mib: crate::pipeline::WRITER_QUEUE_BYTES >> 20,
        ingest_log_skip_damaged: false,
        max_batch_rows: 100_000,
        commit_max_delay_ms: 250,
        commit_max_mib: DEFAULT_COMMIT_MAX_MIB,
        commit_stream_mib: DEFAULT_COMMIT_STREAM_MIB,
        careful_through: None,
        checkpoint_mib: 256,
        checkpoint_writeback_ms: 10,
        duckdb_memory_limit: "2GB".into(),
        duckdb_threads: 0,
        duckdb_row_group_size: DEFAULT_ROW_GROUP_SIZE,
        duckdb_reattach_mib: DEFAULT_REATTACH_MIB,
        background_nice: DEFAULT_BACKGROUND_NICE,
        ingest_nice: 0,
        heap_purge_ms: crate::heap::DEFAULT_PURGE_MS,
        heap_huge_pages: false,
        malloc_arena_max: 0,
        malloc_mmap_threshold_kib: DEFAULT_MMAP_THRESHOLD_KIB,
        query_timeout_ms: 30_000,
        query_max_rows: 100_000,
        ingest_token: None,
        read_token: None,
        control_token: None,
        prices: None,
        pg_addr: SocketAddr::from(([127, 0, 0, 1], 5433)),
        pg_tls_cert: None,
        pg_tls_key: None,
        log: "info".into(),
        log_json: false,
        shutdown_timeout_secs: 10,
        live_retention: 20_000,
        live_buffer: 1024,
        live_heartbeat_secs: 15,
        session_idle_secs: 60,
        session_stuck_secs: 300,
        session_finish_secs: 1800,
        console_dir: None,
        query_max_bytes: 64 * 1024 * 1024,
        query_send_timeout_secs: 30,
        pg_max_connections: 64,
        pg_idle_timeout_secs: 600,
        http_header_timeout_secs: 10,
        http_body_idle_timeout_secs: 30,
        http_max_connections: 1024,
        grpc_max_connections: 1024,
        grpc_handshake_timeout_secs: 10,
        grpc_idle_timeout_secs: 300,
        grpc_keepalive_secs: 60,
        grpc_request_timeout_secs: 30,
        grpc_max_concurrent_streams: 100,
        grpc_max_connection_age_secs: 1800,
        allowed_hosts: Vec::new(),
        insecure_no_auth: false,
        live_retention_mib: DEFAULT_LIVE_RETENTION_MIB,
        task_link_pattern: None,
        alerts_file: None,
        alert_webhook_secret: None,
        control: crate::control::args::ControlArgs::default(),
    }
}

/// Parse the process arguments (and config file) into a command.
pub fn parse() -> Result<Command, ConfigError> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Serve(args) => {
            let sub = matches.subcommand_matches("serve").cloned().unwrap_or_default();
            Ok(Command::Serve(args.apply_file(&sub)?))
        }
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_fills_defaults_but_not_flags() {
        let dir = std::env::temp_dir().join(format!("ac-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("c.toml");
        std::fs::write(&path, "data_dir = \"/tmp/from-file\"\nquery_max_rows = 7\nhttp_addr = \"127.0.0.1:9999\"\n")
            .expect("write");
        let m = Cli::command()
            .try_get_matches_from([
                "agent-console",
                "serve",
                "--config",
                path.to_str().expect("utf8"),
                "--query-max-rows",
                "9",
            ])
            .expect("parse");
        let sub = m.subcommand_matches("serve").expect("serve").clone();
        let args = ServeArgs::from_arg_matches(&sub).expect("args").apply_file(&sub).expect("file");
        assert_eq!(args.data_dir, PathBuf::from("/tmp/from-file"));
        assert_eq!(args.query_max_rows, 9, "command line beats the file");
        assert_eq!(args.http_addr.port(), 9999);
        std::fs::write(&path, "no_such_key = 1\n").expect("write");
        let args = ServeArgs::from_arg_matches(&sub).expect("args");
        assert!(matches!(args.apply_file(&sub), Err(ConfigError::Invalid { .. })));
    }

    #[test]
    fn store_tuning_flags_reach_the_store() {
        let parse = |extra: &[&str]| {
            let m = Cli::command().try_get_matches_from(["agent-console", "serve"].iter().chain(extra)).expect("parse");
            let sub = m.subcommand_matches("serve").expect("serve").clone();
            ServeArgs::from_arg_matches(&sub).expect("args").store_config()
        };
        let d = parse(&[]);
        assert_eq!(d.writer_queue_bytes, crate::pipeline::WRITER_QUEUE_BYTES);
        assert_eq!(d.checkpoint_writeback, Some(Duration::from_millis(10)));
        let c = parse(&["--writer-queue-mib", "192", "--checkpoint-writeback-ms", "0", "--checkpoint-mib", "64"]);
        assert_eq!(c.writer_queue_bytes, 192 << 20);
        assert_eq!(c.checkpoint_writeback, None, "0 turns the write-back off");
        assert_eq!(c.checkpoint_bytes, 64 << 20);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as i64;
        assert_eq!(d.threads, (cores - 1).max(1), "by default DuckDB leaves a core to the ingest threads");
        assert_eq!(parse(&["--duckdb-threads", "3"]).threads, 3);
        assert_eq!(d.row_group_size, DEFAULT_ROW_GROUP_SIZE);
        assert_eq!(parse(&["--duckdb-row-group-size", "122880"]).row_group_size, 122_880);
        for bad in ["0", "1000", "2049", "2097152", "x"] {
            let r = Cli::command().try_get_matches_from(["agent-console", "serve", "--duckdb-row-group-size", bad]);
            assert!(r.is_err(), "--duckdb-row-group-size {bad} is refused");
        }
    }

    #[test]
    fn defaults_are_loopback() {
        let d = ServeArgs::defaults();
        assert!(d.grpc_addr.ip().is_loopback() && d.http_addr.ip().is_loopback());
        assert_eq!(d.grpc_addr.port(), 4317);
        assert_eq!(d.http_addr.port(), 4318);
        assert!(d.pg_addr.ip().is_loopback());
        assert_eq!(d.pg_addr.port(), 5433);
    }
}
