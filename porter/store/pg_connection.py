"""A PostgreSQL connection with the sqlite3 surface the store's closures use (issue 12).

Every area of the store runs closures `work(db)` on one writer connection in a worker thread
(porter/store/base.py `_write`); they call `db.execute(sql, params)` with SQLite's `?` and
`:name` placeholders, then `fetchone()`, `fetchall()` or `rowcount` on what it returns, and read
rows by position or by column name (`sqlite3.Row`). `PgConnection` gives a psycopg 3 connection
that surface, so the same closures run on either database:

- `json_each(?)` (a bound JSON array's elements) becomes `jsonb_array_elements_text(?::jsonb)`;
- placeholders are translated to psycopg's (`?` to `%s`, `:name` to `%(name)s`, every literal
  `%` doubled), skipping string literals, quoted identifiers, comments and `::` casts (not
  understood, and unused by the store: dollar quoting, `E'\\''` escapes, and jsonb's `?`
  operators, which would read as placeholders: `jsonb_exists()` is their function form);
- values are bound as SQLite stored them: a bool as 0 or 1 (the schema keeps SQLite's integer
  flags), a `StrEnum` as its value (psycopg would bind an Enum by its name);
- rows are `Row`s: indexable by position and by column name, case-insensitively, like
  `sqlite3.Row`.

The connection is in autocommit mode, as the store's SQLite connections are
(`isolation_level=None`): a transaction is what `BEGIN` ... `COMMIT` (or `transaction()`) spans.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import Enum
from functools import lru_cache
from typing import Any, overload

import psycopg
from psycopg.rows import RowMaker

Params = Sequence[Any] | Mapping[str, Any]

# What the translation must step over (kept as written) or rewrite, leftmost first: a string
# literal, a quoted identifier, a comment, a `::` cast; then `?`, `:name` and a literal `%`.
_TOKENS = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|::"""
    r"""|(?P<positional>\?)|:(?P<named>[A-Za-z_][A-Za-z0-9_]*)|%""",
    re.DOTALL,
)


class PlaceholderError(psycopg.ProgrammingError):
    """A statement's placeholders and the parameters given do not fit together."""


# SQLite's table of a bound JSON array's elements, `json_each(?)`, and PostgreSQL's: its `value`
# column is text, so a statement comparing it with an integer column casts it (`CAST(value AS
# BIGINT)`, which SQLite reads alike).
_JSON_EACH = re.compile(r"\bjson_each\((\?|:[A-Za-z_][A-Za-z0-9_]*)\)")


@lru_cache(maxsize=1024)
def translate(sql: str) -> tuple[str, str]:
    """The statement with psycopg's placeholders, and its style: "" (none), "?" or ":"."""
    sql = _JSON_EACH.sub(r"jsonb_array_elements_text(CAST(\1 AS jsonb))", sql)
    styles: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        if match["positional"]:
            styles.add("?")
            return "%s"
        if match["named"]:
            styles.add(":")
            return f"%({match['named']})s"
        # psycopg reads `%` everywhere, literals and comments included: each is doubled.
        return match[0].replace("%", "%%")

    translated = _TOKENS.sub(replace, sql)
    if len(styles) > 1:
        raise PlaceholderError(f"a statement mixes `?` and `:name` placeholders: {sql!r}")
    return translated, styles.pop() if styles else ""


def _value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Enum):
        return value.value
    return value


def bind(sql: str, params: Params | None) -> tuple[str, Params | None]:
    """The statement and parameters to give psycopg for a statement written for sqlite3."""
    translated, style = translate(sql)
    if not style:
        if params:
            raise PlaceholderError(f"parameters given to a statement without placeholders: {sql!r}")
        return sql, None  # sent as written: psycopg reads no placeholders without parameters
    if style == ":":
        if not isinstance(params, Mapping):
            raise PlaceholderError(f"`:name` placeholders need a mapping of values: {sql!r}")
        return translated, {name: _value(value) for name, value in params.items()}
    if params is None or isinstance(params, Mapping | str | bytes):
        raise PlaceholderError(f"`?` placeholders need a sequence of values: {sql!r}")
    return translated, [_value(value) for value in params]


class Columns:
    """A result's column names, and where each name is (shared by the result's rows)."""

    __slots__ = ("index", "names")

    def __init__(self, names: Sequence[str]) -> None:
        self.names = [name.lower() for name in names]
        self.index: dict[str, int] = {}
        for position, name in enumerate(self.names):
            self.index.setdefault(name, position)  # the first of same-named columns, as sqlite3


class Row:
    """A result row, like `sqlite3.Row`: by position, by column name (any case), `keys()`."""

    __slots__ = ("_columns", "_values")

    def __init__(self, columns: Columns, values: Sequence[Any]) -> None:
        self._columns = columns
        self._values = tuple(values)

    @overload
    def __getitem__(self, key: int | str) -> Any: ...
    @overload
    def __getitem__(self, key: slice) -> tuple[Any, ...]: ...
    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            try:
                return self._values[self._columns.index[key.lower()]]
            except KeyError:
                raise IndexError(f"no such column: {key}") from None
        return self._values[key]

    def keys(self) -> list[str]:
        return list(self._columns.names)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Row):
            return NotImplemented
        return self._columns.names == other._columns.names and self._values == other._values

    def __hash__(self) -> int:
        return hash((tuple(self._columns.names), self._values))

    def __repr__(self) -> str:
        return f"Row({list(zip(self._columns.names, self._values, strict=True))!r})"


def row_factory(cursor: psycopg.Cursor[Any]) -> RowMaker[Row]:
    """psycopg's row factory making `Row`s; the column map is built once per result."""
    columns = Columns([column.name for column in cursor.description or ()])

    def make(values: Sequence[Any]) -> Row:
        return Row(columns, values)

    return make


Cursor = psycopg.Cursor[Row]


class PgConnection:
    """A psycopg connection with the sqlite3 connection surface the store uses."""

    def __init__(self, conn: psycopg.Connection[Row]) -> None:
        self.raw = conn

    @classmethod
    def connect(cls, url: str, **kwargs: Any) -> PgConnection:
        return cls(psycopg.connect(url, autocommit=True, row_factory=row_factory, **kwargs))

    def execute(self, sql: str, params: Params | None = None) -> Cursor:
        query, values = bind(sql, params)
        return self.raw.execute(query, values)

    def executemany(self, sql: str, seq_of_params: Iterable[Params]) -> Cursor:
        translated, _ = translate(sql)
        rows = [bind(sql, params)[1] for params in seq_of_params]
        cursor = self.raw.cursor()
        cursor.executemany(translated, rows)  # type: ignore[arg-type]
        return cursor

    @property
    def in_transaction(self) -> bool:
        status = self.raw.info.transaction_status
        return status != psycopg.pq.TransactionStatus.IDLE

    @contextlib.contextmanager
    def transaction(self) -> Iterator[PgConnection]:
        """`BEGIN` ... `COMMIT`, or `ROLLBACK` when the block raises."""
        self.raw.execute("BEGIN")
        try:
            yield self
        except BaseException:
            self.raw.execute("ROLLBACK")
            raise
        self.raw.execute("COMMIT")

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> PgConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
