"""`porter backup PATH`: a consistent copy of the database, taken while Porter serves.

SQLite's online backup API copies pages from its own connection. Between steps it would restart
whenever another process commits, which a serving Porter does many times a second, so the copy
would never finish; holding one read transaction for the whole copy pins a snapshot instead (WAL
readers never block the writer), and the backup is the database as of its first step: every
delivery acknowledged before it began is in it. The copy goes to a private temporary file beside
PATH, is checked, fsynced, and only then renamed into place.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from porter.errors import PorterError
from porter.settings import Settings

PAGES = 1024  # pages per step: 4 MiB at SQLite's default page size
PAUSE = 0.005  # seconds between steps, so the serving Porter's writer gets the disk too


@dataclass(frozen=True)
class Backup:
    path: Path
    size: int
    tasks: int
    keys: Path | None  # the key file copied beside it, with --with-keys

    def summary(self) -> str:
        return f"wrote {self.path} ({self.size} bytes, {self.tasks} tasks)"


def take_backup(settings: Settings, target: Path, *, force: bool = False,
                with_keys: bool = False, pages: int = PAGES) -> Backup:
    """Back up PORTER_DATABASE to `target` (and with `with_keys` the key file to
    `target`.keys); both destinations are checked before anything is written."""
    database = settings.database_file
    if database is None:
        raise PorterError("porter backup copies a SQLite file; PORTER_DATABASE is PostgreSQL: "
                          "use pg_dump")
    if not database.is_file():
        raise PorterError(f"no database at {database} (PORTER_DATABASE): nothing to back up")
    keys_from = settings.keys_file if with_keys and settings.secret_keys is None else None
    if keys_from is not None and not keys_from.is_file():
        keys_from = None  # no ring was ever generated here; key_note says so
    keys_to = keys_path(target) if keys_from is not None else None
    live = [database, *(database.with_name(database.name + s) for s in ("-wal", "-shm")),
            settings.keys_file]
    for destination in (target, keys_to):
        if destination is not None:
            _check_destination(destination, live, force=force)
    with _temporary(target) as temporary:
        _copy(database, temporary, pages=pages)
        tasks = _verify(temporary)
        _fsync(temporary)
        os.replace(temporary, target)
    _fsync_directory(target.parent)
    if keys_from is not None and keys_to is not None:
        _copy_file(keys_from, keys_to)
    return Backup(path=target, size=target.stat().st_size, tasks=tasks, keys=keys_to)


def keys_path(target: Path) -> Path:
    """Where --with-keys puts the key file: beside the backup, named as Porter names its own
    (porter.db → porter.db.keys), so a restore copies both the same way."""
    return target.with_name(target.name + ".keys")


def key_note(settings: Settings, done: Backup) -> str:
    """One line: sealed secrets in the backup are unreadable without the key ring."""
    if settings.secret_keys is not None:
        return "sealed secrets in the backup need the key ring too: keep PORTER_SECRET_KEYS " \
               "with it (--with-keys copies only a generated key file)"
    if done.keys is not None:
        return f"copied the key ring to {done.keys}: sealed secrets need it; keep it as " \
               "private as the backup"
    if not settings.keys_file.is_file():
        return f"no key ring at {settings.keys_file} yet: nothing has been sealed with one"
    return f"sealed secrets in the backup need the key ring too: back up {settings.keys_file}, " \
           "or pass --with-keys"


# -- the copy ---------------------------------------------------------------------------------


def _check_destination(path: Path, live: list[Path], *, force: bool) -> None:
    resolved = path.resolve()
    for own in live:
        if resolved == own.resolve() or _same_file(path, own):
            raise PorterError(f"{path} is Porter's own {own.name}; back up to another path")
    if path.is_dir():
        raise PorterError(f"{path} is a directory; name the backup file")
    if (path.exists() or path.is_symlink()) and not force:
        raise PorterError(f"{path} exists; pass --force to replace it")
    if not path.parent.is_dir():
        raise PorterError(f"no directory {path.parent} to write {path.name} in")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@contextlib.contextmanager
def _temporary(target: Path) -> Iterator[Path]:
    """A new private file beside `target` (same file system, so the rename is atomic), removed
    with its journal if the backup does not get as far as renaming it."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        raise _write_error(exc, target) from None
    try:
        yield temporary
    except sqlite3.Error as exc:
        raise _database_error(exc, target) from None
    except OSError as exc:
        raise _write_error(exc, target) from None
    finally:
        for leftover in (temporary, *(temporary.with_name(temporary.name + suffix)
                                      for suffix in ("-journal", "-wal", "-shm"))):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _copy(database: Path, temporary: Path, *, pages: int) -> None:
    # mode=rw: a missing file is an error, never a new empty database.
    source = sqlite3.connect(f"{database.resolve().as_uri()}?mode=rw", uri=True,
                             isolation_level=None)
    try:
        source.execute("PRAGMA busy_timeout = 5000")
        source.execute("BEGIN")  # the snapshot starts at the first read and lasts the copy
        try:
            porter_database = _has_migrations(source)
        except sqlite3.DatabaseError as exc:
            raise PorterError(f"cannot read {database}: {exc}") from None
        if not porter_database:
            raise PorterError(f"{database} is not a Porter database (no schema_migrations)")
        copy = sqlite3.connect(temporary, isolation_level=None)
        try:
            source.backup(copy, pages=pages, progress=lambda *_: time.sleep(PAUSE))
            # The copy came over in WAL mode; one self-contained file is what a backup should be.
            copy.execute("PRAGMA journal_mode = DELETE")
        finally:
            copy.close()
        source.execute("COMMIT")
    finally:
        source.close()


def _verify(path: Path) -> int:
    """Check the copy as a restore would read it; its number of tasks."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        problems = [str(row[0]) for row in db.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise PorterError(f"the copy failed its integrity check: {'; '.join(problems[:3])}")
        if not _has_migrations(db):
            raise PorterError("the copy has no schema_migrations table")
        return int(db.execute("SELECT count(*) FROM tasks").fetchone()[0])
    finally:
        db.close()


def _has_migrations(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                      " AND name = 'schema_migrations'").fetchone() is not None


def _copy_file(source: Path, target: Path) -> None:
    """Copy a small private file: written 0600 beside `target`, fsynced, renamed into place."""
    data = source.read_bytes()
    with _temporary(target) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    _fsync_directory(target.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    """The rename is durable only once the directory is on disk."""
    with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
        _fsync(directory)


def _write_error(exc: OSError, target: Path) -> PorterError:
    directory = target.parent.resolve()
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return PorterError(f"the disk holding {directory} is full: {target} was not written")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PorterError(f"cannot write in {directory}: {exc.strerror}")
    return PorterError(f"could not write {target}: {exc.strerror or exc}")


def _database_error(exc: sqlite3.Error, target: Path) -> PorterError:
    code = getattr(exc, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL:
        return PorterError(f"the disk holding {target.parent.resolve()} is full: {target} "
                           "was not written")
    # SQLite passes on no errno: ENOSPC is SQLITE_FULL; EFBIG (a file size limit), EIO are this.
    if code == sqlite3.SQLITE_IOERR_WRITE:
        return PorterError(f"could not write {target} (is the disk holding "
                           f"{target.parent.resolve()} full?): it was not written")
    return PorterError(f"the backup failed ({exc}): {target} was not written")
