-- What a task produced and where Porter reported it.
ALTER TABLE tasks ADD COLUMN status_comment_id INTEGER;
ALTER TABLE tasks ADD COLUMN base_ref TEXT;
ALTER TABLE tasks ADD COLUMN base_sha TEXT;
ALTER TABLE tasks ADD COLUMN branch TEXT;
ALTER TABLE tasks ADD COLUMN commit_sha TEXT;
ALTER TABLE tasks ADD COLUMN pr_number INTEGER;
ALTER TABLE tasks ADD COLUMN pr_url TEXT;
ALTER TABLE tasks ADD COLUMN summary TEXT;
ALTER TABLE tasks ADD COLUMN cost_usd REAL;
ALTER TABLE tasks ADD COLUMN files_changed INTEGER;
ALTER TABLE tasks ADD COLUMN started_at REAL;
ALTER TABLE tasks ADD COLUMN finished_at REAL;
ALTER TABLE tasks ADD COLUMN authorized_at REAL;

-- A job re-armed while it runs must run again: `generation` makes completion compare-and-set.
ALTER TABLE jobs ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN progress TEXT NOT NULL DEFAULT '{}';
