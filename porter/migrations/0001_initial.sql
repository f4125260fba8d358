-- Deliveries that addressed Porter. Unique by X-GitHub-Delivery and by the signed comment id, so a
-- redelivery (same id) and a re-send under a new id are both recognised.
CREATE TABLE deliveries (
    delivery_id TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    comment_key TEXT NOT NULL UNIQUE,
    received_at REAL NOT NULL
);

CREATE TABLE tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL REFERENCES deliveries(delivery_id),
    comment_key TEXT NOT NULL UNIQUE,
    repo TEXT NOT NULL,
    installation_id INTEGER,
    issue_number INTEGER NOT NULL,
    is_pull_request INTEGER NOT NULL,
    comment_kind TEXT NOT NULL,
    comment_id INTEGER NOT NULL,
    comment_url TEXT NOT NULL DEFAULT '',
    requester TEXT NOT NULL,
    requester_id INTEGER,
    agent TEXT NOT NULL,
    model TEXT,
    instruction TEXT NOT NULL,
    context TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL,
    stage TEXT,
    reason TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX tasks_by_state ON tasks(state, id);
CREATE INDEX tasks_by_repo ON tasks(repo, id);
CREATE INDEX tasks_by_requester ON tasks(requester, id);
CREATE INDEX tasks_by_agent ON tasks(agent, id);
CREATE INDEX tasks_by_issue ON tasks(repo, issue_number, id);

CREATE TABLE task_events (
    id INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL REFERENCES tasks(id),
    attempt INTEGER NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX task_events_by_task ON task_events(task_id, id);

-- Durable side effects (GitHub writes, machine launches, replies): retried until done or given up.
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE,
    task_id INTEGER REFERENCES tasks(id),
    installation_id INTEGER,
    payload TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    run_after REAL NOT NULL,
    locked_until REAL,
    last_error TEXT,
    result TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX jobs_due ON jobs(state, run_after);
CREATE INDEX jobs_by_task ON jobs(task_id);
