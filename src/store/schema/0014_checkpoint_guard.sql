-- The table the writer inserts into, and rolls back, while it checkpoints, so that DuckDB's
-- checkpoint does not vacuum (merge) the row groups its bulk appends wrote (`store/vacuum_guard.rs`,
-- issue 11). Always empty.
CREATE TABLE checkpoint_guard (x INTEGER);
