-- PostgreSQL form of porter/migrations/0006_feed.sql (issue 12): the same tables, columns,
-- constraints and indexes. SQLite INTEGER is BIGINT (GitHub ids pass 2^31), REAL is DOUBLE
-- PRECISION, an INTEGER PRIMARY KEY that SQLite numbers itself is an identity column.

-- Live pages ask "which tasks changed since this moment?" at every wake-up: an index on the
-- change time keeps that a short range scan, however many tasks there are.
CREATE INDEX tasks_by_updated ON tasks(updated_at, id);
