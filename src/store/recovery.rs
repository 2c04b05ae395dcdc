//! Opening the DuckDB file, with a salvage path for a damaged DuckDB WAL.
//!
//! Rows committed to DuckDB after its last checkpoint live only in its WAL
//! (`agent-console.duckdb.wal`) and in our own ingest log, whose segments are deleted only after
//! a checkpoint covers them. So when DuckDB refuses to open because its WAL is damaged, the WAL
//! is moved aside (`agent-console.duckdb.wal.damaged-<time>`, kept for inspection), DuckDB opens
//! at its last checkpoint, and the ingest log replays everything after that checkpoint's log
//! position: nothing acknowledged is lost. This is loud (an ERROR line naming both files) but
//! automatic, so a collector restarted by a supervisor comes back by itself.

use std::path::{Path, PathBuf};

use duckdb::{Config, Connection};

use super::{StoreConfig, StoreError};

fn config(cfg: &StoreConfig) -> Result<Config, StoreError> {
    Ok(Config::default().max_memory(&cfg.memory_limit)?.threads(cfg.threads)?.enable_autoload_extension(false)?)
}

fn wal_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".wal");
    PathBuf::from(p)
}

/// Open the database file; on failure with a WAL present, move the WAL aside and open again.
pub fn open_database(path: &Path, cfg: &StoreConfig) -> Result<Connection, StoreError> {
    match Connection::open_with_flags(path, config(cfg)?) {
        Ok(c) => Ok(c),
        Err(first) => {
            let wal = wal_path(path);
            if !wal.exists() {
                return Err(first.into());
            }
            let stamp =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let mut aside = wal.as_os_str().to_owned();
            aside.push(format!(".damaged-{stamp}"));
            let aside = PathBuf::from(aside);
            std::fs::rename(&wal, &aside).map_err(|e| {
                StoreError::Unavailable(format!(
                    "DuckDB cannot open {} ({first}) and its WAL cannot be moved aside: {e}",
                    path.display()
                ))
            })?;
            tracing::error!(
                database = %path.display(),
                error = %first,
                moved_to = %aside.display(),
                "DuckDB could not open its WAL: moved it aside and opening at the last checkpoint; \
                 the ingest log replays what the WAL held"
            );
            Connection::open_with_flags(path, config(cfg)?).map_err(|second| {
                StoreError::Unavailable(format!(
                    "DuckDB cannot open {} even without its WAL (moved to {}): {second}",
                    path.display(),
                    aside.display()
                ))
            })
        }
    }
}
