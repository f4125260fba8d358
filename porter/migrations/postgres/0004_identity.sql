-- PostgreSQL form of porter/migrations/0004_identity.sql (issue 12): the same tables, columns,
-- constraints and indexes. SQLite INTEGER is BIGINT (GitHub ids pass 2^31), REAL is DOUBLE
-- PRECISION, an INTEGER PRIMARY KEY that SQLite numbers itself is an identity column.

-- Who this Porter is, and which of its processes holds each job.
--
-- `instance` has one row, made once per database: machines carry its id, so two Porters on
-- one host (or sharing one Fly app) each list, reap and destroy only their own.
CREATE TABLE instance (
    id TEXT PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL
);

-- A row per Porter process that opened the database. A job claim names its process, so a
-- restarted Porter can tell a claim of a process that is gone (same host and boot, that pid
-- no longer running since that start time) and take the job back at once, not when the lease
-- runs out. Claims of processes elsewhere still wait for their lease.
CREATE TABLE processes (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    pid BIGINT NOT NULL,
    pid_start BIGINT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL
);

ALTER TABLE jobs ADD COLUMN claimed_by TEXT;
