-- Cost rollup kept by the writer in the same transaction as the model calls it summarises: one
-- row per UTC hour, agent, task, model and provider ('' where unknown, since key columns cannot
-- be NULL). `GET /api/cost` reads it when the question allows (not per session, not per minute,
-- hour-aligned ranges) so fleet rollups stay fast over hundreds of millions of calls. Rebuilt
-- from model_calls on every re-price.
CREATE TABLE cost_hourly (
    hour               TIMESTAMP NOT NULL,
    agent_id           VARCHAR NOT NULL,
    task_id            VARCHAR NOT NULL,
    model              VARCHAR NOT NULL,
    provider           VARCHAR NOT NULL,
    calls              BIGINT NOT NULL,
    cost_usd           DOUBLE,
    input_tokens       BIGINT NOT NULL,
    output_tokens      BIGINT NOT NULL,
    cache_read_tokens  BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    PRIMARY KEY (hour, agent_id, task_id, model, provider)
);
INSERT INTO cost_hourly
SELECT date_trunc('hour', time), coalesce(agent_id, ''), coalesce(task_id, ''), coalesce(model, ''),
       coalesce(provider, ''), count(*), sum(cost_usd), coalesce(sum(input_tokens), 0),
       coalesce(sum(output_tokens), 0), coalesce(sum(cache_read_tokens), 0), coalesce(sum(cache_write_tokens), 0)
FROM model_calls GROUP BY ALL;
