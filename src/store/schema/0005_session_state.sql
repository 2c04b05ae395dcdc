-- Session state (issue 4). The writer's session tracker (`sessions::tracker`) owns each
-- session's state and writes it here only when it changes, in the same transaction as the rows
-- that caused the change; every change is also appended to `session_transitions`.
--   status: running | idle | paused | errored | finished
--   stuck:  a running session with no activity for the stuck timeout
--   status_reason: why the last change happened (e.g. 'SessionEnd', 'no activity for 60 s')
--   model:  the latest model the session called
--   parent_session_id: the session that spawned this one (subagent / child session)
--   last_activity: collector clock (UTC) of the newest activity seen
ALTER TABLE sessions ADD COLUMN parent_session_id VARCHAR;
ALTER TABLE sessions ADD COLUMN status VARCHAR;
ALTER TABLE sessions ADD COLUMN status_since TIMESTAMP;
ALTER TABLE sessions ADD COLUMN status_reason VARCHAR;
ALTER TABLE sessions ADD COLUMN stuck BOOLEAN;
ALTER TABLE sessions ADD COLUMN model VARCHAR;
ALTER TABLE sessions ADD COLUMN last_activity TIMESTAMP;
ALTER TABLE sessions ADD COLUMN ended_at TIMESTAMP;
-- Sessions stored before state tracking existed count as finished at their last activity.
UPDATE sessions SET status = 'finished', status_since = last_seen, status_reason = 'before state tracking',
                    stuck = false, last_activity = last_seen, ended_at = last_seen;

CREATE TABLE session_transitions (
    time                TIMESTAMP NOT NULL,     -- collector clock (UTC) when the change was decided
    session_id          VARCHAR NOT NULL,
    agent_id            VARCHAR,
    task_id             VARCHAR,
    parent_session_id   VARCHAR,
    from_status         VARCHAR,                -- NULL for a new session
    to_status           VARCHAR NOT NULL,
    stuck               BOOLEAN NOT NULL,
    reason              VARCHAR
);
