-- Which due job is claimed first (porter/priorities.py): lower sooner, then run_after, then id.
-- put_job computes it for every job written from now on; jobs already waiting get the same
-- value here, so an upgrade does not reorder them.
ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 20;
UPDATE jobs SET priority = CASE
    WHEN kind = 'react' AND json_extract(payload, '$.content') = 'eyes' THEN 0
    WHEN kind IN ('publish', 'machine.launch') THEN 10
    WHEN kind IN ('react', 'status') THEN 30
    ELSE 20
END;
CREATE INDEX jobs_ready ON jobs(state, priority, run_after, id);
