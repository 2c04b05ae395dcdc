//! The web console: the operator's screen, served by the collector at `/` on the HTTP port.
//! Plain ES modules (Preact + htm for views, uPlot for charts, vendored under `ui/vendor/` with
//! versions and sha256 digests in `vendor.toml`), embedded in the binary by `assets` so it works
//! offline and with the README's two commands. `serve` answers `GET /` and deep links with the
//! shell (`index.html`) under a strict Content-Security-Policy (no outside origin, the one inline
//! import map pinned by its hash), assets with their MIME type and an ETag, and everything else
//! with 404. The shell and assets hold no data: every number comes from `/api/*`, under the read
//! token when one is set (the page asks for it and keeps it in `sessionStorage`).
//! `--console-dir` (dev only) serves the files from disk instead of the embedded copy.

pub mod assets;
pub mod serve;

pub use serve::routes;

/// Errors of the console module.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("no console asset {0:?}")]
    NotFound(String),
    #[error("cannot read console asset {path}: {source}")]
    Read { path: String, source: std::io::Error },
}
