-- One row per attempt of a task on a machine. The bearer token is stored only as a hash; the
-- attempt number fences late callbacks from an earlier attempt.
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    task_id INTEGER NOT NULL REFERENCES tasks(id),
    attempt INTEGER NOT NULL,
    token_hash TEXT NOT NULL,
    runner TEXT NOT NULL,
    machine_id TEXT,
    state TEXT NOT NULL DEFAULT 'launching',
    stage TEXT,
    message TEXT,
    last_heartbeat_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    log_bytes INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    completed_at REAL,
    UNIQUE (task_id, attempt)
);
CREATE INDEX runs_by_state ON runs(state);

CREATE TABLE run_logs (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    at REAL NOT NULL,
    text TEXT NOT NULL,
    UNIQUE (run_id, seq)
);
