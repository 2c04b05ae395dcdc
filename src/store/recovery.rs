//! Opening the DuckDB file, with a salvage path for a damaged DuckDB WAL.
//!
//! Rows committed to DuckDB after its last checkpoint live only in its WAL
//! (`agent-console.duckdb.wal`) and in our own ingest log, whose segments are deleted only after
//! a checkpoint covers them. So when DuckDB refuses to open because its WAL is damaged, the WAL
//! is moved aside (`agent-console.duckdb.wal.damaged-<time>`, kept for inspection), DuckDB opens
//! at its last checkpoint, and the ingest log replays everything after that checkpoint's log
//! position: nothing acknowledged is lost. This is loud (an ERROR line naming both files) but
//! automatic, so a collector restarted by a supervisor comes back by itself.
//!
//! A lock conflict is never a damaged WAL: another process (a second collector on the same
//! directory, or one still exiting) holds the database, and its WAL is live. That error is
//! returned as it is and the WAL is left alone (the soak found a restart racing a dying
//! predecessor moving the live WAL aside).

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
            if is_lock_conflict(&first.to_string()) {
                return Err(StoreError::Unavailable(format!(
                    "{} is in use by another process (another collector on the same --data-dir, or one \
                     still exiting); its WAL was left alone: {first}",
                    path.display()
                )));
            }
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

/// DuckDB's answer when another process holds the database file's lock.
fn is_lock_conflict(error: &str) -> bool {
    error.contains("Could not set lock") || error.contains("Conflicting lock")
}

#[cfg(test)]
mod tests {
    use super::is_lock_conflict;

    #[test]
    fn lock_conflicts_are_told_apart_from_damage() {
        for (msg, lock) in [
            (
                "IO Error: Could not set lock on file \"/d/agent-console.duckdb\": Conflicting lock is held in \
                 /usr/bin/agent-console (PID 27209)",
                true,
            ),
            ("Serialization Error: Failed to deserialize: field id mismatch", false),
            ("INTERNAL Error: Failure while replaying WAL file", false),
            ("IO Error: Corrupt database file: computed checksum does not match", false),
        ] {
            assert_eq!(is_lock_conflict(msg), lock, "{msg}");
        }
    }
}
