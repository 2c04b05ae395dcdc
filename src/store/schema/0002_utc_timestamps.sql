-- Times become TIMESTAMP holding UTC. The bundled DuckDB has no ICU extension, and without ICU a
-- TIMESTAMPTZ cannot be truncated, extracted from or shifted by an interval (`date_trunc`,
-- `extract(epoch from ..)`, `time - INTERVAL '1 hour'` all fail), which is exactly what rollups and
-- Grafana's macros need. Every value we store is UTC; the Postgres wire reports these columns as
-- timestamptz (+00) and the JSON API as RFC 3339 with `Z`.
ALTER TABLE spans ALTER time TYPE TIMESTAMP;
ALTER TABLE spans ALTER start_time TYPE TIMESTAMP;
ALTER TABLE spans ALTER end_time TYPE TIMESTAMP;
ALTER TABLE logs ALTER time TYPE TIMESTAMP;
ALTER TABLE logs ALTER observed_time TYPE TIMESTAMP;
ALTER TABLE metric_points ALTER time TYPE TIMESTAMP;
ALTER TABLE metric_points ALTER start_time TYPE TIMESTAMP;
ALTER TABLE model_calls ALTER time TYPE TIMESTAMP;
ALTER TABLE tool_calls ALTER time TYPE TIMESTAMP;
ALTER TABLE sessions ALTER time TYPE TIMESTAMP;
ALTER TABLE sessions ALTER first_seen TYPE TIMESTAMP;
ALTER TABLE sessions ALTER last_seen TYPE TIMESTAMP;
ALTER TABLE agents ALTER time TYPE TIMESTAMP;
ALTER TABLE agents ALTER first_seen TYPE TIMESTAMP;
ALTER TABLE agents ALTER last_seen TYPE TIMESTAMP;
