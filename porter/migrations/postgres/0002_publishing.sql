-- PostgreSQL form of porter/migrations/0002_publishing.sql (issue 12): the same tables, columns,
-- constraints and indexes. SQLite INTEGER is BIGINT (GitHub ids pass 2^31), REAL is DOUBLE
-- PRECISION, an INTEGER PRIMARY KEY that SQLite numbers itself is an identity column.

-- What a task produced and where Porter reported it.
ALTER TABLE tasks ADD COLUMN status_comment_id BIGINT;
ALTER TABLE tasks ADD COLUMN base_ref TEXT;
ALTER TABLE tasks ADD COLUMN base_sha TEXT;
ALTER TABLE tasks ADD COLUMN branch TEXT;
ALTER TABLE tasks ADD COLUMN commit_sha TEXT;
ALTER TABLE tasks ADD COLUMN pr_number BIGINT;
ALTER TABLE tasks ADD COLUMN pr_url TEXT;
ALTER TABLE tasks ADD COLUMN summary TEXT;
ALTER TABLE tasks ADD COLUMN cost_usd DOUBLE PRECISION;
ALTER TABLE tasks ADD COLUMN files_changed BIGINT;
ALTER TABLE tasks ADD COLUMN started_at DOUBLE PRECISION;
ALTER TABLE tasks ADD COLUMN finished_at DOUBLE PRECISION;
ALTER TABLE tasks ADD COLUMN authorized_at DOUBLE PRECISION;

-- A job re-armed while it runs must run again: `generation` makes completion compare-and-set.
ALTER TABLE jobs ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN progress TEXT NOT NULL DEFAULT '{}';
