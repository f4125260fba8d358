-- When each Porter process was last seen alive (issue 12). A process renews it with its job
-- leases; one on another host that stops renewing for long (killed, its host lost) is known to
-- be gone, and its row goes, where before only a process on the same host could be judged.
ALTER TABLE processes ADD COLUMN seen_at REAL;
