-- The ingest log (issue 11): DuckDB is a consumer of an append-only log of exports. The last log
-- position committed to DuckDB is written in the same transaction as the rows it carried, so a
-- restart replays exactly what is missing.
CREATE TABLE ingest_log_state (
    id INTEGER PRIMARY KEY,
    position BIGINT NOT NULL,
    updated TIMESTAMP
);
INSERT INTO ingest_log_state VALUES (1, 0, NULL);

-- Records DuckDB refused as data (no retry can store them), kept with their raw log bytes so
-- they can be inspected or re-sent; the log position moved past them.
CREATE TABLE quarantine (
    time TIMESTAMP NOT NULL,
    position BIGINT NOT NULL,
    error VARCHAR NOT NULL,
    record BLOB
);
