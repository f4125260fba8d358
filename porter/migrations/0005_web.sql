-- The web app: people who signed in with GitHub, their sealed secrets, their sessions, and an
-- audit log of what they did.

-- A GitHub account that signed in. `id` is GitHub's user id (logins can be renamed).
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    login TEXT NOT NULL,
    name TEXT,
    avatar_url TEXT,
    default_agent TEXT,
    default_model TEXT,
    fly_app TEXT,
    token_expires_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_sign_in_at REAL
);
CREATE INDEX users_by_login ON users(login COLLATE NOCASE);

-- Every per-user secret (model API keys, Fly token, the user's GitHub tokens), sealed with
-- AES-GCM under the key ring, the user id and `name` bound as associated data
-- (porter/crypto.py). `last4` is what pages may show. User id 0 holds the App credentials
-- that /setup obtained.
CREATE TABLE user_secrets (
    user_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    sealed TEXT NOT NULL,
    last4 TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL,
    PRIMARY KEY (user_id, name)
);

-- A browser session: the cookie carries the id (signed); only its hash is kept.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX sessions_by_user ON sessions(user_id);

-- Who did what, when, from where (page, api, comment) and from which address.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    actor_id INTEGER,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL,
    address TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}'
);

-- Whose keys and Fly app a task ran with ("requester" or "operator"), never the values.
ALTER TABLE tasks ADD COLUMN key_source TEXT;
ALTER TABLE tasks ADD COLUMN fly_source TEXT;
-- The prompt the agent was sent, redacted, for the task page.
ALTER TABLE runs ADD COLUMN prompt TEXT;
-- History filters by branch and type-ahead over repositories and branches.
CREATE INDEX tasks_by_base_ref ON tasks(base_ref, id);
-- Whose Fly credentials started the run's machine (a user id; NULL: the operator's), so the
-- same account stops and destroys it.
ALTER TABLE runs ADD COLUMN runner_owner INTEGER;
