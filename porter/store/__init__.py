"""The store: every SQL statement Porter runs lives in this package (and its migrations).

SQLite in WAL mode through aiosqlite. One connection writes, one reads, so reads never queue behind
a write transaction. Durability: `synchronous=FULL`. In WAL mode NORMAL would not fsync the log at
each commit, so a power cut could lose a delivery we already acknowledged, and GitHub never
redelivers on its own (docs/platform-notes.md §B.4). FULL costs one fsync per commit, and intake
commits concurrent deliveries in one transaction (group commit), so the fsync is shared.

Every public write is one `BEGIN IMMEDIATE` transaction, handed to the writer's thread in one hop
(`StoreBase._write`); every read is `StoreBase._read`. A `postgresql://` database runs the same
reads and closures on PostgreSQL (`pg_backend`, `pg_connection`, `pg_migrations`), each write
transaction taking one advisory lock so writers take turns as on SQLite (issue 12,
docs/postgres-port.md). The package: `connection` (the `Store`: opening, migrations, process
identity), `base` (the backend seam, SQLite's backend and the listeners), one module per area
(`tasks`, `runs`, `jobs`, `intake`), and `rows` (rows as Porter's types). Statements are built
from fixed column names and `?` marks only, every value bound (why pyproject.toml exempts this
package from S608).
"""

from porter.store.base import StoreError
from porter.store.connection import Migration, Store, migrations
from porter.store.intake import IntakeWriter

__all__ = ["IntakeWriter", "Migration", "Store", "StoreError", "migrations"]
