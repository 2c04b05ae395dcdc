//! OTLP in. Two front doors that only decode (`grpc`, `http` with `decode` and `otlp_json`) and
//! one shared path behind them (`ingest`), so every protocol behaves the same.

pub mod decode;
pub mod grpc;
pub mod http;
pub mod ingest;
pub mod otlp_json;
