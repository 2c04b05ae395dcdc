-- The price table in force (embedded defaults + --prices file + API additions), rewritten by the
-- writer at start-up and on every re-price, so SQL and dashboards can see what a cost is based on.
-- USD per 1M tokens. `model_calls.cost_source` says how each call's cost was obtained:
-- reported (sent by the source, always wins), computed (from this table), unpriced (unknown model).
CREATE TABLE prices (
    model          VARCHAR NOT NULL,
    provider       VARCHAR NOT NULL,
    effective      TIMESTAMP NOT NULL,
    input          DOUBLE NOT NULL,
    output         DOUBLE NOT NULL,
    cache_read     DOUBLE NOT NULL,
    cache_write    DOUBLE NOT NULL,
    table_version  VARCHAR
);
