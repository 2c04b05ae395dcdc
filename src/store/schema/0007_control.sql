-- Control plane (issue 12): commands sent to agents, their lifecycle, an append-only audit trail,
-- each session's control state, held tool calls awaiting approval, and approval rules set over the
-- API. Written by `control::persist` through `Store::apply`; read back at start-up.

-- One row per command; its current status and the time of each step.
--   kind:   pause | resume | inject | kill | approve | deny
--   status: accepted -> delivered -> observed, or expired | failed | superseded
CREATE TABLE control_commands (
    command_id      VARCHAR PRIMARY KEY,
    session_id      VARCHAR NOT NULL,
    kind            VARCHAR NOT NULL,
    message         VARCHAR,
    reason          VARCHAR,
    tool_use_id     VARCHAR,
    hard            BOOLEAN NOT NULL DEFAULT false,
    for_session     BOOLEAN NOT NULL DEFAULT false,
    issued_by       VARCHAR NOT NULL,              -- token name, or rule:<name>
    status          VARCHAR NOT NULL,
    result          VARCHAR,                       -- what the newest step found
    delivered_via   VARCHAR,                       -- e.g. 'PreToolUse (hook binary)'
    accepted_at     TIMESTAMP NOT NULL,
    delivered_at    TIMESTAMP,
    observed_at     TIMESTAMP,
    ended_at        TIMESTAMP                      -- expired / failed / superseded
);

-- Append-only: every step of every command, every approval request and answer, policy changes and
-- refused commands. Never updated or deleted.
CREATE TABLE control_audit (
    time            TIMESTAMP NOT NULL,
    actor           VARCHAR NOT NULL,              -- token name, rule:<name>, agent, policy, collector
    action          VARCHAR NOT NULL,              -- e.g. command.accepted, command.delivered, approval.requested
    session_id      VARCHAR,
    command_id      VARCHAR,
    approval_id     VARCHAR,
    kind            VARCHAR,
    result          VARCHAR,
    detail          JSON
);

-- Each session's control state (sticky across restarts: a pause stays a pause).
--   mode: running | paused | killed
CREATE TABLE control_sessions (
    session_id      VARCHAR PRIMARY KEY,
    mode            VARCHAR NOT NULL,
    mode_command_id VARCHAR,
    mode_since      TIMESTAMP NOT NULL,
    mode_by         VARCHAR,
    mode_reason     VARCHAR,
    hard_kill       BOOLEAN NOT NULL DEFAULT false,
    allowed_rules   VARCHAR[]                      -- approval rules approved for the whole session
);

-- Tool calls an approval rule held.   status: pending | approved | denied | expired
CREATE TABLE control_approvals (
    approval_id     VARCHAR PRIMARY KEY,
    session_id      VARCHAR NOT NULL,
    tool_use_id     VARCHAR NOT NULL,
    tool_name       VARCHAR,
    tool_input      JSON,
    rule            VARCHAR NOT NULL,
    status          VARCHAR NOT NULL,
    default_decision VARCHAR NOT NULL,             -- what a timeout answers: deny | allow
    requested_at    TIMESTAMP NOT NULL,
    expires_at      TIMESTAMP NOT NULL,
    answered_at     TIMESTAMP,
    answered_by     VARCHAR,
    answer_reason   VARCHAR,
    command_id      VARCHAR                        -- the approve / deny command that answered it
);

-- The approval policy set with PUT /api/approvals/policy (rules from the config file are not here).
CREATE TABLE control_policy (
    singleton       INTEGER PRIMARY KEY,           -- always 1
    policy          JSON NOT NULL,
    updated_at      TIMESTAMP NOT NULL,
    updated_by      VARCHAR NOT NULL
);
