-- PostgreSQL form of porter/migrations/0009_job_priority.sql (issue 12): the same tables, columns,
-- constraints and indexes. SQLite INTEGER is BIGINT (GitHub ids pass 2^31), REAL is DOUBLE
-- PRECISION, an INTEGER PRIMARY KEY that SQLite numbers itself is an identity column.

-- Which due job is claimed first (porter/priorities.py): lower sooner, then run_after, then id.
-- put_job computes it for every job written from now on; jobs already waiting get the same
-- value here, so an upgrade does not reorder them.
ALTER TABLE jobs ADD COLUMN priority BIGINT NOT NULL DEFAULT 20;
-- payload is JSON text (json.dumps), as in SQLite: read here as jsonb.
UPDATE jobs SET priority = CASE
    WHEN kind = 'react' AND payload::jsonb ->> 'content' = 'eyes' THEN 0
    WHEN kind IN ('publish', 'machine.launch') THEN 10
    WHEN kind IN ('react', 'status') THEN 30
    ELSE 20
END;
CREATE INDEX jobs_ready ON jobs(state, priority, run_after, id);
