//! Attaching the database file again, so that DuckDB's memory does not grow with the rows stored
//! (issue 11).
//!
//! DuckDB keeps every row group of an attached file that it has written or read in memory (its
//! columns' segments, statistics and block handles, in glibc's heap, outside its buffer manager
//! and its `memory_limit`) until the file is detached: ~46 KiB for a row group of 23 columns
//! (`tests/duckdb_row_groups.rs`), ~6 MiB more per million rows at the collector's 8,192-row
//! groups, for as long as the process runs. So the writer counts the rows it commits and, right
//! after a checkpoint (when nothing of DuckDB's lives only in memory), once their row groups hold
//! about `--duckdb-reattach-mib`, detaches the file and attaches it again (30-140 ms at full rate). DuckDB then
//! reads row groups back lazily, as appends and queries need them. Its cache starts empty.
//!
//! The other connections of the instance (readers, the vacuum guard) name the file's catalog
//! (`recovery::CATALOG`), so they reach the new attachment by name. A transaction still open on
//! the old attachment keeps it and its file, and the new attach fails until it ends. So while
//! this runs no reader connection is made (`Readers::exclusive`; a reader asking for one is
//! answered as evicted at once, it does not wait on the async runtime), the readers running get
//! `READER_GRACE` to finish and are then evicted (503 / SQLSTATE 40001, which clients retry), and
//! the attach is retried until `ATTACH_DEADLINE`. Past it the writer stops for an in-process
//! restart, which replays the ingest log.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use duckdb::Connection;

use super::evict::Readers;
use super::recovery::{attach_sql, CATALOG};

/// The heap DuckDB holds for one row group written (23 columns, measured by
/// `tests/duckdb_row_groups.rs`: ~46 KiB).
pub const ROW_GROUP_BYTES: u64 = 47_000;

/// How long readers running at a reattach may take to finish before they are evicted.
const READER_GRACE: Duration = Duration::from_millis(250);

/// How long the attach is retried while a transaction on the old attachment holds the file.
const ATTACH_DEADLINE: Duration = Duration::from_secs(10);

/// Why the file is not attached as before.
#[derive(Debug, thiserror::Error)]
pub enum ReattachError {
    /// Nothing changed: the file is still attached.
    #[error("cannot detach the database: {0}")]
    Detach(String),
    /// The file is detached and could not be attached again: the writer cannot go on.
    #[error("cannot attach the database again after {waited_ms} ms: {error}")]
    Attach { waited_ms: u64, error: String },
}

/// The writer's count of what the attachment holds, and how to renew it.
#[derive(Debug)]
pub struct Reattach {
    path: PathBuf,
    row_group_size: u64,
    bound_bytes: u64,
    rows_since: u64,
}

impl Reattach {
    pub fn new(path: PathBuf, row_group_size: u64, bound_bytes: u64) -> Self {
        Self { path, row_group_size: row_group_size.max(1), bound_bytes, rows_since: 0 }
    }

    /// Count rows committed.
    pub fn committed(&mut self, rows: u64) {
        self.rows_since = self.rows_since.saturating_add(rows);
    }

    /// The heap the row groups written since the last attach hold, estimated.
    pub fn held_bytes(&self) -> u64 {
        self.rows_since.saturating_mul(ROW_GROUP_BYTES) / self.row_group_size
    }

    /// Whether it is time to attach again.
    pub fn due(&self) -> bool {
        self.bound_bytes > 0 && self.held_bytes() >= self.bound_bytes
    }

    /// Detach the file and attach it again on `conn` (the writer's, between transactions, right
    /// after a checkpoint). Returns how long it took.
    pub fn run(&mut self, conn: &Connection, readers: &Readers) -> Result<Duration, ReattachError> {
        let started = Instant::now();
        let _no_new_readers = readers.exclusive();
        let cutoff = readers.cutoff();
        while readers.open() > 0 && started.elapsed() < READER_GRACE {
            std::thread::sleep(Duration::from_millis(2));
        }
        let evicted = readers.evict_before(cutoff);
        conn.execute_batch(&format!("USE memory; DETACH \"{CATALOG}\";")).map_err(|e| {
            let _ = conn.execute_batch(&format!("USE \"{CATALOG}\""));
            ReattachError::Detach(e.to_string())
        })?;
        let sql = attach_sql(&self.path, self.row_group_size);
        loop {
            match conn.execute_batch(&sql) {
                Ok(()) => break,
                Err(e) if started.elapsed() < ATTACH_DEADLINE => {
                    tracing::debug!(error = %e, "attach refused while a reader's transaction holds the file; retrying");
                    readers.evict_before(cutoff);
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => {
                    return Err(ReattachError::Attach {
                        waited_ms: started.elapsed().as_millis() as u64,
                        error: e.to_string(),
                    })
                }
            }
        }
        // Statements prepared on this connection were bound to the old attachment.
        conn.flush_prepared_statement_cache();
        let held = self.held_bytes();
        self.rows_since = 0;
        let took = started.elapsed();
        tracing::info!(
            row_group_mib = held >> 20,
            readers_evicted = evicted,
            elapsed_ms = took.as_secs_f64() * 1e3,
            "database attached again: DuckDB's memory for the row groups written so far is freed"
        );
        Ok(took)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Metrics;
    use std::sync::Arc;

    /// A file attached the collector's way with one table and a reader connection.
    fn attached(dir: &std::path::Path) -> (Connection, PathBuf) {
        let path = dir.join("db.duckdb");
        let conn = Connection::open_in_memory().expect("duckdb");
        conn.execute_batch(&attach_sql(&path, 2048)).expect("attach");
        conn.execute_batch("CREATE TABLE t (i BIGINT, s VARCHAR)").expect("create");
        (conn, path)
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).expect("count")
    }

    #[test]
    fn the_estimate_follows_the_rows_and_the_row_group_size() {
        let mut r = Reattach::new(PathBuf::from("x"), 8192, 64 << 20);
        r.committed(8192);
        assert_eq!(r.held_bytes(), ROW_GROUP_BYTES);
        assert!(!r.due());
        r.committed(12_000_000);
        assert!(r.due(), "~68 MiB of row groups at 8,192 rows each");
        assert!(!Reattach { bound_bytes: 0, ..Reattach::new(PathBuf::from("x"), 8192, 0) }.due(), "0 is never");
    }

    /// While the writer attaches again, making a reader connection does not wait (it runs on the
    /// async runtime): the reader is answered as evicted, to retry.
    #[test]
    fn no_reader_connection_is_made_or_waited_for_during_a_reattach() {
        let readers = Readers::new(Arc::new(Metrics::default()));
        let attaching = readers.exclusive();
        assert!(readers.making().is_none());
        drop(attaching);
        let making = readers.making();
        assert!(making.is_some());
        assert!(readers.making().is_some(), "readers do not exclude one another");
    }

    /// Rows stay, other connections reach the new attachment by name, prepared statements are
    /// bound again, and a reader's open transaction only delays the attach (it is evicted).
    #[test]
    fn attached_again_everything_is_there_for_every_connection() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (conn, path) = attached(dir.path());
        let readers = Arc::new(Readers::new(Arc::new(Metrics::default())));
        conn.execute_batch("INSERT INTO t SELECT i, 'row ' || i FROM range(50000) r(i); CHECKPOINT;").expect("rows");
        let other = super::super::recovery::clone_connection(&conn).expect("clone");
        conn.prepare_cached("INSERT INTO t VALUES (?, ?)")
            .expect("prepare")
            .execute(duckdb::params![-1, "x"])
            .expect("insert");
        let mut r = Reattach::new(path.clone(), 2048, 1);
        r.committed(50_001);
        assert!(r.due());
        r.run(&conn, &readers).expect("reattach");
        assert_eq!(r.held_bytes(), 0, "counted again from zero");
        assert_eq!(count(&conn), 50_001);
        assert_eq!(count(&other), 50_001, "an idle connection reaches the new attachment");
        conn.prepare_cached("INSERT INTO t VALUES (?, ?)")
            .expect("prepare")
            .execute(duckdb::params![-2, "y"])
            .expect("insert after");
        assert_eq!(count(&other), 50_002);

        // A registered reader inside a transaction: evicted after the grace, and the attach
        // waits for its transaction to end.
        let reader = readers.register(super::super::recovery::clone_connection(&conn).expect("clone"));
        reader.execute_batch("BEGIN TRANSACTION; SELECT count(*) FROM t;").expect("open a snapshot");
        let eviction = reader.eviction();
        let ends = std::thread::spawn(move || {
            while !eviction.is_evicted() {
                std::thread::sleep(Duration::from_millis(1));
            }
            // What a reader does when evicted: its statement fails, its connection is dropped.
            drop(reader);
        });
        r.run(&conn, &readers).expect("reattach with a reader in a transaction");
        ends.join().expect("reader thread");
        assert_eq!(readers.open(), 0);
        assert_eq!(count(&conn), 50_002);
        assert_eq!(count(&other), 50_002);
    }
}
