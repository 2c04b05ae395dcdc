-- Cost provenance (issue 15): an operator marks an agent or a session as covered by a
-- subscription (Claude Max/Pro, ...) or billed by API. A subscription's cost is not money spent:
-- it is shown as an estimate at list price. A session's mark wins over its agent's; no mark is
-- 'api'. Written only through `Store::apply` (`billing.rs`).
CREATE TABLE billing_marks (
    kind     VARCHAR NOT NULL,   -- agent | session
    id       VARCHAR NOT NULL,
    billing  VARCHAR NOT NULL,   -- subscription | api
    plan     VARCHAR,            -- free text, e.g. 'claude-max'
    time     TIMESTAMP NOT NULL,
    who      VARCHAR,
    PRIMARY KEY (kind, id)
);

-- Every model call with its provenance: `billing` and `cost_is_estimate` (true under a
-- subscription: `cost_usd` is then list price, not spend), `spend_usd` (NULL for estimates).
CREATE VIEW model_call_costs AS
SELECT m.*,
       coalesce(s.billing, a.billing, 'api') AS billing,
       CASE WHEN s.id IS NOT NULL THEN s.plan ELSE a.plan END AS billing_plan,
       coalesce(s.billing, a.billing, 'api') = 'subscription' AS cost_is_estimate,
       CASE WHEN coalesce(s.billing, a.billing, 'api') = 'subscription' THEN NULL ELSE m.cost_usd END AS spend_usd
FROM model_calls m
LEFT JOIN billing_marks s ON s.kind = 'session' AND s.id = m.session_id
LEFT JOIN billing_marks a ON a.kind = 'agent' AND a.id = m.agent_id;
