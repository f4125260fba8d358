-- PostgreSQL form of porter/migrations/0011_creations.sql (issue 12): the same tables, columns,
-- constraints and indexes. SQLite INTEGER is BIGINT (GitHub ids pass 2^31), REAL is DOUBLE
-- PRECISION, an INTEGER PRIMARY KEY that SQLite numbers itself is an identity column.

-- GitHub content creations (comments, reactions, pull requests) per installation, for pacing
-- them to GitHub's 80 a minute and 500 an hour (porter/pacing.py). Kept here, not in a
-- process's memory, so that a restart or a second Porter process on this database sees the
-- creations already made. An installation's rows older than the longest window go when it
-- next creates something, so each holds at most about an hour's worth.
CREATE TABLE creations (
    installation_id BIGINT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX creations_by_installation ON creations(installation_id, at);
