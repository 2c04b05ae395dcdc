//! Checkpoints that leave the row groups as the commits wrote them.
//!
//! A transaction that brings a table at least one full row group (`recovery::attach` sets the
//! size) has its rows compressed and written at the commit, and ends with one partial row group.
//! A DuckDB checkpoint normally also vacuums: it merges adjacent row groups whenever fewer would
//! hold their rows, which decompresses and compresses again nearly everything those commits had
//! just written (a profile under full load: 38% of the writer thread, and ~25% fewer spans
//! stored per second than with no bulk writes at all). DuckDB does not vacuum while another
//! transaction that inserted rows is open (it takes a "concurrent" checkpoint, the kind it also
//! takes while readers hold old snapshots). So the writer holds one open across each checkpoint:
//! an insert into the empty `checkpoint_guard` table on a connection of its own, rolled back
//! afterwards. Nothing is ever committed to that table.
//!
//! What is left unvacuumed: one partial row group per table per large transaction (scans read
//! them like any other), and rows deleted from the small control tables (rules, task links),
//! which keep their deletion marks instead of being compacted away.

use duckdb::Connection;

/// A connection kept for holding checkpoints' vacuum off.
pub struct VacuumGuard {
    conn: Connection,
}

/// While alive, DuckDB's checkpoints do not vacuum. Rolls its transaction back when dropped.
pub struct Held<'g> {
    conn: &'g Connection,
}

impl VacuumGuard {
    /// A guard on its own connection to the writer's database.
    pub fn new(conn: Connection) -> Self {
        Self { conn }
    }

    /// Open the inserting transaction. `None` (with a warning) when it cannot be opened: the
    /// checkpoint then vacuums, which costs time but loses nothing.
    pub fn hold(&self) -> Option<Held<'_>> {
        let open = || self.conn.execute_batch("BEGIN TRANSACTION; INSERT INTO checkpoint_guard VALUES (1);");
        // A rollback that failed earlier may have left the transaction open: end it, try again.
        let opened = open().or_else(|_| {
            let _ = self.conn.execute_batch("ROLLBACK");
            open()
        });
        match opened {
            Ok(()) => Some(Held { conn: &self.conn }),
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                tracing::warn!(error = %e, "cannot hold the checkpoint's vacuum off; this checkpoint vacuums");
                None
            }
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.conn.execute_batch("ROLLBACK") {
            tracing::warn!(error = %e, "checkpoint guard: rollback failed; retried before the next checkpoint");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two transactions of 2,048 + 500 rows each into a table with 2,048-row groups, then a
    /// checkpoint; returns the table's row groups after it and its row count.
    fn checkpoint_after_bulk_appends(guarded: bool) -> (i64, i64) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("db.duckdb");
        let conn = Connection::open_in_memory().expect("db");
        conn.execute_batch(&format!(
            "ATTACH '{}' AS db (RECOVERY_MODE NO_WAL_WRITES, ROW_GROUP_SIZE 2048); USE db;
             CREATE TABLE t (i INTEGER, s VARCHAR);
             CREATE TABLE checkpoint_guard (x INTEGER);",
            file.display()
        ))
        .expect("attach");
        for k in 0..2 {
            conn.execute(
                "INSERT INTO t SELECT i, 'row ' || i FROM range(?, ? + 2548) r(i)",
                duckdb::params![k * 10_000, k * 10_000],
            )
            .expect("insert");
        }
        let other = conn.try_clone().expect("clone");
        other.execute_batch("USE db").expect("use");
        let guard = VacuumGuard::new(other);
        let held = guarded.then(|| guard.hold().expect("held"));
        conn.execute_batch("CHECKPOINT").expect("checkpoint");
        drop(held);
        let groups: i64 = conn
            .query_row("SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('t')", [], |r| r.get(0))
            .expect("groups");
        let rows: i64 = conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).expect("rows");
        let guard_rows: i64 =
            conn.query_row("SELECT count(*) FROM checkpoint_guard", [], |r| r.get(0)).expect("guard rows");
        assert_eq!(guard_rows, 0, "the guard's insert is never committed");
        (groups, rows)
    }

    /// What the writer relies on, pinned against DuckDB upgrades: a plain checkpoint merges the
    /// bulk appends' partial row groups (4 row groups of 2,048 / 500 / 2,048 / 500 rows become
    /// fewer), a guarded one leaves all 4, and no row is lost either way.
    #[test]
    fn a_guarded_checkpoint_leaves_bulk_appended_row_groups_unmerged() {
        let (plain, plain_rows) = checkpoint_after_bulk_appends(false);
        let (guarded, guarded_rows) = checkpoint_after_bulk_appends(true);
        assert_eq!((plain_rows, guarded_rows), (5096, 5096));
        assert_eq!(guarded, 4, "2,048 + 500 rows twice, as committed");
        assert!(plain < 4, "an unguarded checkpoint vacuums: {plain} row groups");
    }

    #[test]
    fn holding_twice_after_a_lost_rollback_still_works() {
        let conn = Connection::open_in_memory().expect("db");
        conn.execute_batch("CREATE TABLE checkpoint_guard (x INTEGER)").expect("table");
        let guard = VacuumGuard::new(conn);
        let held = guard.hold().expect("held");
        std::mem::forget(held);
        assert!(guard.conn.execute_batch("BEGIN TRANSACTION").is_err(), "the transaction is still open");
        let again = guard.hold();
        assert!(again.is_some());
        drop(again);
        guard.conn.execute_batch("BEGIN TRANSACTION; ROLLBACK").expect("no transaction left open");
    }
}
