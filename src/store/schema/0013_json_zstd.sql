-- The JSON columns of the three bulk tables are compressed with zstd (issue 11). DuckDB's default
-- for strings, dictionary + FSST, is chosen column by column at each checkpoint; on attribute JSON
-- (~0.9 KB a span) building its symbol tables was the largest single cost of a checkpoint, and the
-- file came out ~3x larger than with zstd (BENCHMARKS.md, "zstd for the JSON columns"). Other
-- columns keep DuckDB's choice: ids, names, states and keys compress better as dictionaries, and
-- filters on them stay fast. DuckDB cannot change a column's compression in place, so each table
-- is rebuilt once here, with its columns in the same order (the writer appends by position).
CREATE TABLE spans_zstd (
    time                TIMESTAMP NOT NULL,
    trace_id            VARCHAR NOT NULL,
    span_id             VARCHAR NOT NULL,
    parent_span_id      VARCHAR,
    name                VARCHAR,
    kind                VARCHAR,
    start_time          TIMESTAMP NOT NULL,
    end_time            TIMESTAMP NOT NULL,
    duration_ms         DOUBLE,
    status_code         VARCHAR,
    status_message      VARCHAR,
    service_name        VARCHAR,
    scope_name          VARCHAR,
    span_type           VARCHAR,
    model               VARCHAR,
    error               BOOLEAN,
    session_id          VARCHAR,
    agent_id            VARCHAR,
    agent_name          VARCHAR,
    task_id             VARCHAR,
    run_id              VARCHAR,
    attributes          JSON USING COMPRESSION zstd,
    resource_attributes JSON USING COMPRESSION zstd,
    events              JSON USING COMPRESSION zstd,
    links               JSON USING COMPRESSION zstd,
    fallback            INTEGER
);
INSERT INTO spans_zstd SELECT * FROM spans;
DROP TABLE spans;
ALTER TABLE spans_zstd RENAME TO spans;

CREATE TABLE logs_zstd (
    time                TIMESTAMP NOT NULL,
    observed_time       TIMESTAMP,
    trace_id            VARCHAR,
    span_id             VARCHAR,
    severity_number     INTEGER,
    severity_text       VARCHAR,
    event_name          VARCHAR,
    body                VARCHAR,
    service_name        VARCHAR,
    scope_name          VARCHAR,
    session_id          VARCHAR,
    agent_id            VARCHAR,
    agent_name          VARCHAR,
    task_id             VARCHAR,
    run_id              VARCHAR,
    attributes          JSON USING COMPRESSION zstd,
    resource_attributes JSON USING COMPRESSION zstd
);
INSERT INTO logs_zstd SELECT * FROM logs;
DROP TABLE logs;
ALTER TABLE logs_zstd RENAME TO logs;

CREATE TABLE metric_points_zstd (
    time                TIMESTAMP NOT NULL,
    start_time          TIMESTAMP,
    name                VARCHAR NOT NULL,
    description         VARCHAR,
    unit                VARCHAR,
    kind                VARCHAR,
    temporality         VARCHAR,
    is_monotonic        BOOLEAN,
    value               DOUBLE,
    count               UBIGINT,
    sum                 DOUBLE,
    min                 DOUBLE,
    max                 DOUBLE,
    distribution        JSON USING COMPRESSION zstd,
    series_id           VARCHAR,
    service_name        VARCHAR,
    session_id          VARCHAR,
    agent_id            VARCHAR,
    task_id             VARCHAR,
    attributes          JSON USING COMPRESSION zstd,
    resource_attributes JSON USING COMPRESSION zstd
);
INSERT INTO metric_points_zstd SELECT * FROM metric_points;
DROP TABLE metric_points;
ALTER TABLE metric_points_zstd RENAME TO metric_points;
