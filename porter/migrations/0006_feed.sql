-- Live pages ask "which tasks changed since this moment?" at every wake-up: an index on the
-- change time keeps that a short range scan, however many tasks there are.
CREATE INDEX tasks_by_updated ON tasks(updated_at, id);
