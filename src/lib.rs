//! agent-console: an OpenTelemetry-compatible collector and query API for fleets of AI agents.
//!
//! # Layout (follow a byte)
//! - `receiver`: OTLP in. `grpc` and `http` decode (`decode`, `otlp_json`), then call the one
//!   shared `ingest` path.
//! - `model`: the agent model. `normalize` maps OTLP to rows (pure), `semconv` lists the
//!   attribute names it reads, `dedup` drops calls reported twice.
//! - `ingest_log`: where an export becomes durable (segment files, group commit, replay).
//! - `pipeline`: takes every durable record once, in order: dedup, pricing, session state, live
//!   stream, then the DuckDB writer.
//! - `store`: embedded DuckDB. `writer` is the single writer thread (large transactions with
//!   the log position), `reader` runs read-only SQL, `schema` holds the migrations.
//! - `api`: queries out over HTTP (`/api/sql`, `/api/sessions[/{id}[/timeline]]`, `/api/agents`, `/healthz`,
//!   `/metrics`).
//! - `pgwire`: the same read-only SQL over the Postgres wire protocol (psql, drivers, Grafana).
//! - `app` wires it together; `config` parses flags, env and TOML; `error` maps errors to status
//!   codes; `auth` checks bearer tokens; `telemetry` is our own logging and metrics.
//! - `cost`: the embedded, versioned model price table (`prices`) and per-call cost arithmetic.
//! - `live`: the live stream (`/api/live` SSE, `/api/live/ws` WebSocket) fed by the writer's
//!   commit hook.
//! - `sessions`: the session state machine the writer runs (`signals` from rows, `tracker`
//!   states); stored by `store::session_state`.
//! - `console`: the web console (embedded Preact + htm + uPlot pages) served at `/`.
//! - `control`: the control plane: commands to running agents (pause, resume, inject, kill,
//!   approve, deny) with their audited lifecycle, approval rules, per-session capabilities, and
//!   Claude Code delivery through its hooks (`receiver::hooks`).
//! - `fixtures`: realistic OTLP payloads shared by tests, benches and the load generator.

pub mod alerts;
pub mod api;
pub mod app;
pub mod auth;
pub mod billing;
pub mod civil;
pub mod config;
pub mod console;
pub mod control;
pub mod cost;
pub mod error;
pub mod export_cmd;
pub mod fixtures;
pub mod formats;
pub mod heap;
pub mod import;
pub mod ingest_log;
pub mod live;
pub mod local_free;
pub mod malloc_arenas;
pub mod model;
pub mod net;
pub mod pgwire;
pub mod pipeline;
pub mod priority;
pub mod receiver;
pub mod sessions;
pub mod store;
pub mod tasks;
pub mod telemetry;
