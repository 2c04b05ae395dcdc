-- agent-console schema v1. Public tables: Grafana dashboards and later features query these names.
-- Times are TIMESTAMPTZ (UTC); ids are lower-case hex; raw attributes are JSON text.

CREATE TABLE spans (
    time                TIMESTAMPTZ NOT NULL,   -- = start_time
    trace_id            VARCHAR NOT NULL,
    span_id             VARCHAR NOT NULL,
    parent_span_id      VARCHAR,
    name                VARCHAR,
    kind                VARCHAR,                -- internal | server | client | producer | consumer | unspecified
    start_time          TIMESTAMPTZ NOT NULL,
    end_time            TIMESTAMPTZ NOT NULL,
    duration_ms         DOUBLE,
    status_code         VARCHAR,                -- unset | ok | error
    status_message      VARCHAR,
    service_name        VARCHAR,
    scope_name          VARCHAR,
    span_type           VARCHAR,                -- llm | tool | agent | chain | retriever | embedding | other
    model               VARCHAR,
    error               BOOLEAN,
    session_id          VARCHAR,
    agent_id            VARCHAR,
    agent_name          VARCHAR,
    task_id             VARCHAR,
    run_id              VARCHAR,
    attributes          JSON,
    resource_attributes JSON,
    events              JSON,
    links               JSON
);

CREATE TABLE logs (
    time                TIMESTAMPTZ NOT NULL,
    observed_time       TIMESTAMPTZ,
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
    attributes          JSON,
    resource_attributes JSON
);

CREATE TABLE metric_points (
    time                TIMESTAMPTZ NOT NULL,
    start_time          TIMESTAMPTZ,
    name                VARCHAR NOT NULL,
    description         VARCHAR,
    unit                VARCHAR,
    kind                VARCHAR,                -- gauge | sum | histogram | exponential_histogram | summary
    temporality         VARCHAR,                -- delta | cumulative | unspecified
    is_monotonic        BOOLEAN,
    value               DOUBLE,                 -- gauge/sum value; distributions: their sum
    count               UBIGINT,
    sum                 DOUBLE,
    min                 DOUBLE,
    max                 DOUBLE,
    distribution        JSON,
    series_id           VARCHAR,                -- one series: resource + scope + name + point attributes
    service_name        VARCHAR,
    session_id          VARCHAR,
    agent_id            VARCHAR,
    task_id             VARCHAR,
    attributes          JSON,
    resource_attributes JSON
);

CREATE TABLE model_calls (
    time                TIMESTAMPTZ NOT NULL,
    source              VARCHAR,                -- span | log
    trace_id            VARCHAR,
    span_id             VARCHAR,
    request_id          VARCHAR,
    service_name        VARCHAR,
    session_id          VARCHAR,
    agent_id            VARCHAR,
    agent_name          VARCHAR,
    task_id             VARCHAR,
    run_id              VARCHAR,
    model               VARCHAR,
    provider            VARCHAR,
    operation           VARCHAR,
    input_tokens        BIGINT,                 -- OpenTelemetry convention: includes cache read + write
    output_tokens       BIGINT,
    cache_read_tokens   BIGINT,
    cache_write_tokens  BIGINT,
    cost_usd            DOUBLE,
    cost_source         VARCHAR,                -- reported | null (not priced yet)
    duration_ms         DOUBLE,
    error               BOOLEAN,
    token_rule          VARCHAR                 -- otel | cache_added
);

CREATE TABLE tool_calls (
    time                TIMESTAMPTZ NOT NULL,
    source              VARCHAR,
    trace_id            VARCHAR,
    span_id             VARCHAR,
    tool_call_id        VARCHAR,
    service_name        VARCHAR,
    session_id          VARCHAR,
    agent_id            VARCHAR,
    agent_name          VARCHAR,
    task_id             VARCHAR,
    run_id              VARCHAR,
    tool_name           VARCHAR NOT NULL,
    duration_ms         DOUBLE,
    success             BOOLEAN,
    error               VARCHAR
);

CREATE TABLE sessions (
    session_id          VARCHAR PRIMARY KEY,
    time                TIMESTAMPTZ NOT NULL,   -- = last_seen
    first_seen          TIMESTAMPTZ NOT NULL,
    last_seen           TIMESTAMPTZ NOT NULL,
    agent_id            VARCHAR,
    display_name        VARCHAR,
    service_name        VARCHAR,
    task_id             VARCHAR
);

CREATE TABLE agents (
    agent_id            VARCHAR PRIMARY KEY,
    time                TIMESTAMPTZ NOT NULL,   -- = last_seen
    first_seen          TIMESTAMPTZ NOT NULL,
    last_seen           TIMESTAMPTZ NOT NULL,
    display_name        VARCHAR,
    service_name        VARCHAR
);

-- Increments of monotonic sums whatever their temporality: a delta point is its own increment;
-- a cumulative series (re-sent on every export) contributes value minus the previous value of the
-- same series and start time, or the whole value after a reset. Sum these, never the raw points.
CREATE VIEW metric_increments AS
SELECT time, name, unit, series_id, service_name, session_id, agent_id, task_id, attributes,
       CASE
           WHEN temporality <> 'cumulative' THEN value
           WHEN prev_value IS NULL OR prev_start IS DISTINCT FROM start_time OR value < prev_value THEN value
           ELSE value - prev_value
       END AS increment
FROM (
    SELECT *,
           lag(value) OVER (PARTITION BY series_id ORDER BY time) AS prev_value,
           lag(start_time) OVER (PARTITION BY series_id ORDER BY time) AS prev_start
    FROM metric_points
    WHERE kind = 'sum'
);
