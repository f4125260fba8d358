-- The LLM gateway's accounting (porter/gateway/metering.py): one row per model call forwarded
-- for a run, with the tokens its answer reported and what they cost at the prices of
-- porter/gateway/prices.py. cost_usd is NULL when the model has no price there.
CREATE TABLE llm_calls (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    task_id INTEGER NOT NULL REFERENCES tasks(id),
    -- The requester's GitHub user id (tasks.requester_id): not a reference to users, as a
    -- requester need never have signed in to the web app.
    user_id INTEGER,
    provider TEXT NOT NULL,
    model TEXT,
    status INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL,
    started_at REAL NOT NULL,
    duration_ms INTEGER NOT NULL
);
-- Budgets sum these before every call is forwarded: each sum reads its index alone.
CREATE INDEX llm_calls_by_run ON llm_calls(run_id, cost_usd);
CREATE INDEX llm_calls_by_user_day ON llm_calls(user_id, started_at, cost_usd);
-- A task's cost and usage across its attempts (the task page, the status comment, the PR).
CREATE INDEX llm_calls_by_task ON llm_calls(task_id);
-- Where tasks.cost_usd came from: 'porter' (the sum of the gateway's metered calls), 'agent'
-- (what the agent reported at the end), or NULL (nothing yet).
ALTER TABLE tasks ADD COLUMN cost_source TEXT;
