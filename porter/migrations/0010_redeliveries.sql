-- The lost-delivery reconciler (porter/deliveries.py): one row per delivery guid it asked GitHub
-- to send again, or checked, so a delivery that keeps failing (a wrong webhook secret) is asked
-- for a few times, not forever. Rows outlive GitHub's 3-day redelivery window briefly, then go.
CREATE TABLE redeliveries (
    guid TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    -- 'lost': Porter never recorded it; 'ignored': its payload addresses no one Porter serves;
    -- 'duplicate': its comment was recorded under another guid. NULL until decided.
    verdict TEXT,
    requests INTEGER NOT NULL DEFAULT 0,
    last_requested_at REAL,
    gave_up_at REAL,  -- when the last allowed request was spent and the loss was logged
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX redeliveries_by_age ON redeliveries(updated_at);
