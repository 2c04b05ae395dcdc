-- Alerts (issue 13 part 3). Rules made through the API (rules from the alerts file are not
-- stored; the API cannot change them). `spec` is the rule as JSON (`alerts::RuleSpec`).
CREATE TABLE alert_rules (
    name                VARCHAR NOT NULL,      -- unique (the one writer checks)
    spec                VARCHAR NOT NULL,
    created_by          VARCHAR NOT NULL,
    created_at          TIMESTAMP NOT NULL,
    updated_at          TIMESTAMP NOT NULL
);

-- One row per firing: its scope (e.g. `session:abc`, `agent:a1`, `day:2026-12-03`, `all`), the
-- value and threshold when it fired, and when it resolved. `tier` is the budget tier (0.8, 1.0).
CREATE TABLE alerts (
    alert_id            VARCHAR NOT NULL,
    rule                VARCHAR NOT NULL,
    kind                VARCHAR NOT NULL,
    scope               VARCHAR NOT NULL,
    tier                DOUBLE,
    value               DOUBLE,
    threshold           DOUBLE,
    state               VARCHAR NOT NULL,      -- firing | resolved
    pending_at          TIMESTAMP,
    fired_at            TIMESTAMP NOT NULL,
    resolved_at         TIMESTAMP,
    resolved_value      DOUBLE,
    message             VARCHAR
);

-- Every webhook attempt.
CREATE TABLE alert_deliveries (
    time                TIMESTAMP NOT NULL,
    alert_id            VARCHAR NOT NULL,
    rule                VARCHAR NOT NULL,
    event               VARCHAR NOT NULL,      -- firing | resolved
    url                 VARCHAR NOT NULL,
    attempt             INTEGER NOT NULL,
    status              INTEGER,               -- HTTP status, NULL when no answer
    ok                  BOOLEAN NOT NULL,
    error               VARCHAR,
    final               BOOLEAN NOT NULL       -- the last attempt (delivered or given up)
);
