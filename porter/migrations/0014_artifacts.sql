-- Artifacts of a run (issue 13): its log, verification output and changeset, downloadable from
-- the task page until the watchdog deletes them after PORTER_ARTIFACT_RETENTION_DAYS. In the
-- database rather than a directory beside it: replicas on other hosts share no directory.
-- `size` is the content's as given, `content` at most porter/artifacts.py's bound (cut when
-- larger); one of each name per run, so a re-sent completion adds nothing.
CREATE TABLE artifacts (
    id INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL REFERENCES tasks(id),
    run_id TEXT NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    created_at REAL NOT NULL,
    content BLOB NOT NULL,
    UNIQUE (run_id, name)
);
CREATE INDEX artifacts_by_task ON artifacts(task_id, id);
CREATE INDEX artifacts_by_age ON artifacts(created_at);
