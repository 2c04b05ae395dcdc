//! The agent model and the pure mapping from OTLP into it.
//! - `semconv`: the attribute names we read, in priority order.
//! - `attrs`: one-pass attribute index, lenient coercion, AnyValue -> JSON.
//! - `ids`: typed trace/span/session/agent/task ids.
//! - `records`: the row types stored by `store`.
//! - `normalize`: OTLP export request -> `records::Batch` (+ rejected count).
//! - `dedup`: drops model/tool calls reported twice (nested spans, two signals).
//! - `openclaw`: OpenClaw shim run records and plugin usage spans; counting a run once.
//! - `view`: borrowed OTLP attributes and traces, and the zero-copy trace decoder.

pub mod attrs;
pub mod dedup;
pub mod fastmap;
pub mod ids;
pub mod normalize;
pub mod openclaw;
pub mod records;
pub mod semconv;
pub mod validate;
pub mod view;
