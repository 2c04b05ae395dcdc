//! `agent-console-hook`: Claude Code hooks into OTLP. The library holds the pure translation
//! (`translate`, shared with the collector's `POST /hooks/claude`) and settings.json merging
//! (`settings`) and the binary <-> collector exchange (`wire`: headers, answer envelopes, the
//! decision-field filter and, with `sign`, answer signatures); with the `cli` feature it also holds the binary's std-only transport: config,
//! a minimal HTTP/1.1 client and the on-disk spool.

pub mod settings;
pub mod translate;
pub mod wire;

#[cfg(feature = "cli")]
pub mod client;
#[cfg(feature = "cli")]
pub mod config;
#[cfg(feature = "cli")]
pub mod spool;

pub use translate::{parse, translate, Event, Input, Options, Translated};
