-- PostgreSQL form of porter/migrations/0007_history.sql (issue 12): the same tables, columns,
-- constraints and indexes. SQLite INTEGER is BIGINT (GitHub ids pass 2^31), REAL is DOUBLE
-- PRECISION, an INTEGER PRIMARY KEY that SQLite numbers itself is an identity column.

-- The history (/tasks) at 100k tasks and more: each filter the page combines with a
-- repository, as an index that ends in id, so a page is a seek and a short walk in id order
-- (porter/store/listing.py plans the query; bench/pages.py measures it).

-- A repository's tasks in one state ("what failed in acme/api"), and a state within the
-- repositories a signed-in user reaches.
CREATE INDEX tasks_by_repo_state ON tasks(repo, state, id);
-- A repository's tasks on one base branch, and the branch type-ahead within a repository.
CREATE INDEX tasks_by_repo_branch ON tasks(repo, base_ref, id);
-- Someone's tasks in one state ("my failed tasks").
CREATE INDEX tasks_by_requester_state ON tasks(requester, state, id);
-- An issue or pull request number without its repository.
CREATE INDEX tasks_by_issue_number ON tasks(issue_number, id);
