-- PostgreSQL form of porter/migrations/0010_redeliveries.sql (issue 12): the same tables, columns,
-- constraints and indexes. SQLite INTEGER is BIGINT (GitHub ids pass 2^31), REAL is DOUBLE
-- PRECISION, an INTEGER PRIMARY KEY that SQLite numbers itself is an identity column.

-- The lost-delivery reconciler (porter/deliveries.py): one row per delivery guid it asked GitHub
-- to send again, or checked, so a delivery that keeps failing (a wrong webhook secret) is asked
-- for a few times, not forever. Rows outlive GitHub's 3-day redelivery window briefly, then go.
CREATE TABLE redeliveries (
    guid TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    -- 'lost': Porter never recorded it; 'ignored': its payload addresses no one Porter serves;
    -- 'duplicate': its comment was recorded under another guid. NULL until decided.
    verdict TEXT,
    requests BIGINT NOT NULL DEFAULT 0,
    last_requested_at DOUBLE PRECISION,
    gave_up_at DOUBLE PRECISION,  -- when the last allowed request was spent and the loss was logged
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX redeliveries_by_age ON redeliveries(updated_at);
