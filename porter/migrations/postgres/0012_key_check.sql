-- PostgreSQL form of porter/migrations/0012_key_check.sql (issue 12): the same column.

-- The fingerprints of the key ring Porter processes of this database have started with (JSON:
-- key id -> HMAC of a fixed label under that key, never the key), so that a replica whose ring
-- differs (each host generated its own key file) refuses to start instead of failing every
-- sealed secret and machine callback that reaches it (porter/key_check.py).
ALTER TABLE instance ADD COLUMN key_fingerprints TEXT;
