-- Tasks (issue 13): the operator's unit of work. Public and documented: query it from SQL and
-- Grafana. A task is created by hand (`POST /api/tasks`, idempotent on source + external_id) or
-- the first time telemetry names it (`agent_console.task.id`; title = id until named).
--   state_override: inbox | assigned | running | complete, set by hand (NULL: derived)
--   labels: list of label strings
--   created_by: 'telemetry' or the control token's name
CREATE TABLE tasks (
    task_id             VARCHAR NOT NULL,      -- unique (the one writer checks)
    title               VARCHAR NOT NULL,
    description         VARCHAR,
    url                 VARCHAR,
    source              VARCHAR,
    external_id         VARCHAR,
    agent_id            VARCHAR,
    labels              VARCHAR[] NOT NULL DEFAULT [],
    state_override      VARCHAR,
    created_by          VARCHAR NOT NULL,
    created_at          TIMESTAMP NOT NULL,
    updated_at          TIMESTAMP NOT NULL,
    completed_at        TIMESTAMP,
    archived_at         TIMESTAMP
);

-- How sessions belong to tasks: `how` = attribute (telemetry named the task), hand (linked
-- through the API), pattern (the configured regex over git branch / working directory).
-- A session's task is its first link in that order; a child session without a link of its own
-- belongs to its parent's task (see the view `session_tasks`).
CREATE TABLE task_sessions (
    task_id             VARCHAR NOT NULL,
    session_id          VARCHAR NOT NULL,
    how                 VARCHAR NOT NULL,
    linked_at           TIMESTAMP NOT NULL,
    linked_by           VARCHAR                -- 'telemetry' or the control token's name
);

-- Every session's effective task and how it got it ('parent' for a child that took its
-- parent's or grandparent's task).
CREATE VIEW session_tasks AS
WITH direct AS (
    SELECT session_id,
           arg_min(task_id, CASE how WHEN 'attribute' THEN 0 WHEN 'hand' THEN 1 ELSE 2 END) AS task_id,
           arg_min(how, CASE how WHEN 'attribute' THEN 0 WHEN 'hand' THEN 1 ELSE 2 END) AS how
    FROM task_sessions GROUP BY session_id
)
SELECT s.session_id,
       coalesce(d.task_id, s.task_id, pd.task_id, p.task_id, gd.task_id, g.task_id) AS task_id,
       CASE WHEN d.task_id IS NOT NULL THEN d.how
            WHEN s.task_id IS NOT NULL THEN 'attribute'
            ELSE 'parent' END AS how
FROM sessions s
LEFT JOIN direct d ON d.session_id = s.session_id
LEFT JOIN sessions p ON p.session_id = s.parent_session_id
LEFT JOIN direct pd ON pd.session_id = p.session_id
LEFT JOIN sessions g ON g.session_id = p.parent_session_id
LEFT JOIN direct gd ON gd.session_id = g.session_id
WHERE coalesce(d.task_id, s.task_id, pd.task_id, p.task_id, gd.task_id, g.task_id) IS NOT NULL;

-- Model calls with the task they count for: the call's own attribute, else its session's task.
-- `GET /api/cost?group_by=task` and `GET /api/tasks/{id}` both sum this view, so they agree.
CREATE VIEW task_model_calls AS
SELECT mc.*, coalesce(mc.task_id, st.task_id) AS effective_task_id
FROM model_calls mc LEFT JOIN session_tasks st ON st.session_id = mc.session_id;

-- Session states the operator can trust (issue 13 part 2), written by the session tracker:
--   waiting:   waiting for a human (a permission / idle prompt, a pending approval)
--   long_tool: a tool call started and not finished (silent but busy; never `stuck`)
ALTER TABLE sessions ADD COLUMN waiting BOOLEAN;
ALTER TABLE sessions ADD COLUMN long_tool BOOLEAN;
