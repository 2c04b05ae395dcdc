//! Opening the DuckDB file, without DuckDB's WAL, with a salvage path for a damaged one.
//!
//! The file is attached with `RECOVERY_MODE NO_WAL_WRITES`: DuckDB writes no WAL, a commit is in
//! memory and a checkpoint is what reaches the file. Our ingest log already holds every record
//! DuckDB stores, its segments are deleted only once a checkpoint covers them, and the log
//! position DuckDB has committed is stored in the same transactions (`ingest_log_state`), so after
//! a crash DuckDB opens at its last checkpoint with that checkpoint's position and the log
//! replays the rest, each record once. A second copy of every row in DuckDB's WAL bought nothing
//! and cost the writer thread a third of its time (BENCHMARKS.md, issue 11). What the log does
//! not hold (control commands and their audit, tasks, alert rules, billing marks: `Store::apply`)
//! is checkpointed by the writer before the caller is answered.
//!
//! A WAL can still be there, from a collector that wrote one (before this change). It is replayed
//! by a plain open and checkpointed before the attach (see [`open_database`]). When DuckDB
//! refuses to open because that WAL is damaged, or finds nothing it can replay in it, it is moved aside
//! (`agent-console.duckdb.wal.damaged-<time>`, kept for inspection), DuckDB opens at its last
//! checkpoint, and the ingest log replays everything after that checkpoint's log position:
//! nothing acknowledged is lost. This is loud (an ERROR or WARN line naming both files) but automatic,
//! so a collector restarted by a supervisor comes back by itself.
//!
//! A lock conflict is never a damaged WAL: another process (a second collector on the same
//! directory, or one still exiting, or DuckDB opened directly) holds the database and its files
//! are live. That error is returned as it is and any WAL is left alone (the soak found a restart
//! racing a dying predecessor moving the live WAL aside).

use std::path::{Path, PathBuf};

use duckdb::{Config, Connection};

use super::{StoreConfig, StoreError};

/// Spills go where DuckDB puts them for a database file (`<file>.tmp`), not where it puts them
/// for an in-memory instance (`.tmp` in the working directory).
fn config(path: &Path, cfg: &StoreConfig) -> Result<Config, StoreError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    Ok(Config::default()
        .max_memory(&cfg.memory_limit)?
        .threads(cfg.threads)?
        .enable_autoload_extension(false)?
        .with("temp_directory", tmp.to_string_lossy())?)
}

/// The name the database file is attached under (what DuckDB named it when it was opened
/// directly, so `current_database()` and `information_schema` answer as before).
pub const CATALOG: &str = "agent-console";

/// An in-memory DuckDB instance with the file attached under [`CATALOG`], without WAL writes,
/// with `row_group_size` rows per row group, and made this connection's default.
///
/// The row group size decides how a transaction's rows reach the file: a table that gets at
/// least one full row group in a transaction has its rows compressed and written at the commit
/// and its row groups moved into the table as they are (DuckDB's bulk append); below that they
/// are copied into the table at the commit and compressed by the next checkpoint, which is twice
/// the work. DuckDB's default (122,880) is more than a transaction of the writer holds (its bytes
/// bound closes one at ~20,000 spans), so the default here is smaller (`--duckdb-row-group-size`,
/// BENCHMARKS.md, issue 11). Row groups written with another size stay as they are.
fn attach(path: &Path, config: Config, row_group_size: u64) -> Result<Connection, duckdb::Error> {
    let conn = Connection::open_in_memory_with_flags(config)?;
    conn.execute_batch(&attach_sql(path, row_group_size))?;
    Ok(conn)
}

/// The statements that attach the file under [`CATALOG`] and make it the connection's default
/// (`attach`, and `reattach.rs` after a detach).
pub fn attach_sql(path: &Path, row_group_size: u64) -> String {
    let file = path.to_string_lossy().replace('\'', "''");
    format!(
        "ATTACH '{file}' AS \"{CATALOG}\" (RECOVERY_MODE NO_WAL_WRITES, ROW_GROUP_SIZE {row_group_size}); USE \"{CATALOG}\";"
    )
}

/// Another connection to the same database, defaulting to the attached file (a clone starts in
/// the instance's in-memory catalog).
pub fn clone_connection(conn: &Connection) -> Result<Connection, duckdb::Error> {
    let c = conn.try_clone()?;
    c.execute_batch(&format!("USE \"{CATALOG}\""))?;
    Ok(c)
}

fn wal_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".wal");
    PathBuf::from(p)
}

/// A plain open of the file, with DuckDB's WAL (only to replay a WAL left by an older collector).
fn open_plain(path: &Path, config: Config) -> Result<Connection, duckdb::Error> {
    Connection::open_with_flags(path, config)
}

/// Open the database file (attached without WAL writes). A WAL left by a collector that wrote
/// one is first replayed by a plain open, the way it was written, and checkpointed away, so the
/// WAL-less attach never starts with a WAL.
///
/// A WAL the plain open leaves behind held no transaction DuckDB could replay (a torn or damaged
/// first entry): DuckDB keeps such a file to truncate it on its next WAL write, and the WAL-less
/// attach truncates it to the size of its own estimate of uncheckpointed changes, not to zero,
/// which crashed the writer in DuckDB's checkpoint (1 in 10 runs; a torn WAL is what a kill -9
/// leaves). It is moved aside: nothing in it was ever going to be applied, and the ingest log
/// replays everything after the last checkpoint.
pub fn open_database(path: &Path, cfg: &StoreConfig) -> Result<Connection, StoreError> {
    let wal = wal_path(path);
    if wal.exists() {
        let plain = open_salvaging(path, cfg, &open_plain)?;
        plain.execute_batch("CHECKPOINT")?;
        drop(plain);
        if std::fs::metadata(&wal).map(|m| m.len() > 0).unwrap_or(false) {
            let aside = move_aside(path, &wal, "DuckDB found no committed transaction in it")?;
            tracing::warn!(
                database = %path.display(),
                moved_to = %aside.display(),
                "DuckDB's WAL held nothing it could replay (a torn or damaged first entry): moved it aside; \
                 the ingest log replays everything after the last checkpoint"
            );
        }
    }
    let rows = cfg.row_group_size;
    open_salvaging(path, cfg, &|p: &Path, c: Config| attach(p, c, rows))
}

/// Move `wal` aside (`<wal>.damaged-<unix time>`, kept for inspection) and say where.
fn move_aside(path: &Path, wal: &Path, why: &str) -> Result<PathBuf, StoreError> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut aside = wal.as_os_str().to_owned();
    aside.push(format!(".damaged-{stamp}"));
    let aside = PathBuf::from(aside);
    std::fs::rename(wal, &aside).map_err(|e| {
        StoreError::Unavailable(format!(
            "DuckDB cannot use the WAL of {} ({why}) and it cannot be moved aside: {e}",
            path.display()
        ))
    })?;
    Ok(aside)
}

/// Open with `open`; on failure with a WAL present, move the WAL aside and open again.
fn open_salvaging(
    path: &Path,
    cfg: &StoreConfig,
    open: &dyn Fn(&Path, Config) -> Result<Connection, duckdb::Error>,
) -> Result<Connection, StoreError> {
    match open(path, config(path, cfg)?) {
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
            let aside = move_aside(path, &wal, &format!("it cannot be opened: {first}"))?;
            tracing::error!(
                database = %path.display(),
                error = %first,
                moved_to = %aside.display(),
                "DuckDB could not open its WAL: moved it aside and opening at the last checkpoint; \
                 the ingest log replays what the WAL held"
            );
            open(path, config(path, cfg)?).map_err(|second| {
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
