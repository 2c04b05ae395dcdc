//! OTLP in. Two front doors that only decode (`grpc`, `http` with `decode` and `otlp_json`) and
//! one shared path behind them (`ingest`), so every protocol behaves the same. `hooks` is Claude
//! Code's `http` hook route, translated by the hook shim's library, then the same path.

pub mod decode;
pub mod grpc;
pub mod heavy;
pub mod hooks;
pub mod http;
pub mod ingest;
pub mod openclaw_inbox;
pub mod otlp_json;
pub mod prescan;
