"""The sqlite3-like PostgreSQL connection (porter/store/pg_connection.py), on a real cluster."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from enum import StrEnum

import psycopg
import pytest

from porter.store.pg_connection import PgConnection, PlaceholderError, Row, translate


class Colour(StrEnum):
    RED = "red"


@pytest.fixture
def db(postgres_database: str) -> Iterator[PgConnection]:
    with PgConnection.connect(postgres_database) as conn:
        conn.execute("CREATE TABLE items (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
                     " flag BIGINT NOT NULL DEFAULT 0, price DOUBLE PRECISION, note TEXT)")
        yield conn


def test_positional_placeholders_bind_values(db: PgConnection) -> None:
    db.execute("INSERT INTO items (name, flag, price) VALUES (?, ?, ?)", ("a", True, 1.5))
    row = db.execute("SELECT name, flag, price FROM items WHERE name = ?", ["a"]).fetchone()
    assert row is not None and tuple(row) == ("a", 1, 1.5)


def test_named_placeholders_bind_values(db: PgConnection) -> None:
    db.execute("INSERT INTO items (name, note) VALUES (:name, :note)", {"name": "b", "note": "x"})
    row = db.execute("SELECT note FROM items WHERE name = :name AND note = :note",
                     {"name": "b", "note": "x"}).fetchone()
    assert row is not None and row[0] == "x"


def test_rows_read_by_position_and_by_name_like_sqlite(db: PgConnection) -> None:
    db.execute("INSERT INTO items (name, price) VALUES (?, ?)", ("c", 2.0))
    row = db.execute("SELECT id, name AS Label, price FROM items").fetchone()
    assert isinstance(row, Row)
    assert row[1] == row["label"] == row["LABEL"] == "c"
    assert row["price"] == row[-1] == 2.0 and row[0:2] == (row["id"], "c")
    assert row.keys() == ["id", "label", "price"] and len(row) == 3
    assert dict(zip(row.keys(), row, strict=True)) == {"id": row[0], "label": "c", "price": 2.0}
    with pytest.raises(IndexError):
        row["missing"]
    # The same surface as sqlite3.Row, checked side by side.
    lite = sqlite3.connect(":memory:")
    lite.row_factory = sqlite3.Row
    lite_row = lite.execute("SELECT 1 AS id, 'c' AS Label, 2.0 AS price").fetchone()
    assert lite_row["label"] == row["label"] and lite_row[2] == row[2]
    names = [k.lower() for k in lite_row.keys()]  # noqa: SIM118 (a Row iterates values)
    assert names == row.keys()


def test_fetchall_and_rowcount(db: PgConnection) -> None:
    for name in ("d", "e", "f"):
        db.execute("INSERT INTO items (name) VALUES (?)", (name,))
    rows = db.execute("SELECT name FROM items ORDER BY name").fetchall()
    assert [r["name"] for r in rows] == ["d", "e", "f"]
    assert db.execute("UPDATE items SET flag = ? WHERE name != ?", (1, "d")).rowcount == 2
    assert db.execute("DELETE FROM items WHERE name = ?", ("zzz",)).rowcount == 0
    # What the store does with ON CONFLICT: rowcount says whether a row changed.
    added = db.execute("INSERT INTO items (name) VALUES (?) ON CONFLICT (name) DO NOTHING", ("d",))
    assert added.rowcount == 0


def test_returning_gives_the_written_row(db: PgConnection) -> None:
    row = db.execute("INSERT INTO items (name, note) VALUES (?, ?) RETURNING id, note",
                     ("g", "n")).fetchone()
    assert row is not None and row["note"] == "n" and row["id"] > 0


def test_literals_comments_casts_and_percent_are_not_placeholders(db: PgConnection) -> None:
    db.execute("INSERT INTO items (name, note) VALUES (?, 'why? :not -- a %s')", ("h",))
    row = db.execute(
        "SELECT note, id::text AS sid, '50%' AS pct /* :x ? */ FROM items"  # a ? here
        " WHERE name = :name -- :other ?\n AND note LIKE '%' || :tail",
        {"name": "h", "tail": "%s"}).fetchone()
    assert row is not None
    assert row["note"] == "why? :not -- a %s" and row["pct"] == "50%" and row["sid"].isdigit()
    assert db.execute("SELECT '100%' AS p").fetchone() == db.execute("SELECT ? AS p",
                                                                      ("100%",)).fetchone()


def test_enum_values_bind_as_their_value(db: PgConnection) -> None:
    db.execute("INSERT INTO items (name, note) VALUES (?, ?)", ("i", Colour.RED))
    row = db.execute("SELECT note FROM items WHERE note = :c", {"c": Colour.RED}).fetchone()
    assert row is not None and row[0] == "red"


def test_a_statement_uses_one_placeholder_style() -> None:
    assert translate("SELECT ? WHERE x = ?") == ("SELECT %s WHERE x = %s", "?")
    assert translate("SELECT :a::text") == ("SELECT %(a)s::text", ":")
    with pytest.raises(PlaceholderError):
        translate("SELECT ? WHERE x = :a")


def test_mismatched_parameters_are_refused(db: PgConnection) -> None:
    with pytest.raises(PlaceholderError):
        db.execute("SELECT :a", ("x",))
    with pytest.raises(PlaceholderError):
        db.execute("SELECT ?", {"a": 1})
    with pytest.raises(PlaceholderError):
        db.execute("SELECT 1", (1,))
    with pytest.raises(psycopg.ProgrammingError):
        db.execute("SELECT ?, ?", (1,))


def test_begin_and_commit_make_one_transaction(db: PgConnection,
                                               postgres_database: str) -> None:
    assert not db.in_transaction
    db.execute("BEGIN")
    db.execute("INSERT INTO items (name) VALUES (?)", ("j",))
    assert db.in_transaction
    with PgConnection.connect(postgres_database) as other:  # not visible before COMMIT
        assert other.execute("SELECT count(*) FROM items").fetchone() == (
            other.execute("SELECT 0 AS count").fetchone())
        db.execute("COMMIT")
        assert other.execute("SELECT count(*) AS n FROM items").fetchone()["n"] == 1
    assert not db.in_transaction


def test_a_failing_transaction_rolls_back_everything(db: PgConnection) -> None:
    db.execute("INSERT INTO items (name) VALUES (?)", ("k",))
    with pytest.raises(psycopg.errors.UniqueViolation), db.transaction():
        db.execute("INSERT INTO items (name) VALUES (?)", ("l",))
        db.execute("INSERT INTO items (name) VALUES (?)", ("k",))
    assert not db.in_transaction
    names = [r[0] for r in db.execute("SELECT name FROM items ORDER BY name").fetchall()]
    assert names == ["k"]
    with db.transaction():
        db.execute("INSERT INTO items (name) VALUES (?)", ("m",))
    assert db.execute("SELECT count(*) FROM items").fetchone()[0] == 2  # type: ignore[index]


def test_executemany_binds_each_row(db: PgConnection) -> None:
    db.executemany("INSERT INTO items (name, flag) VALUES (?, ?)", [("n", False), ("o", True)])
    rows = db.execute("SELECT name, flag FROM items ORDER BY name").fetchall()
    assert [tuple(r) for r in rows] == [("n", 0), ("o", 1)]


def test_json_each_reads_a_bound_json_array_as_sqlite_does(db: PgConnection) -> None:
    db.execute("INSERT INTO items (name) VALUES ('a'), ('b'), ('c')")
    names = '["a", "c", "zz"]'
    rows = db.execute("SELECT name FROM items WHERE name IN (SELECT value FROM json_each(?))"
                      " ORDER BY name", (names,)).fetchall()
    assert [row[0] for row in rows] == ["a", "c"]
    ids = db.execute("SELECT id FROM items WHERE name IN ('a', 'b')").fetchall()
    rows = db.execute("SELECT name FROM items WHERE id NOT IN"
                      " (SELECT CAST(value AS BIGINT) FROM json_each(:skip))",
                      {"skip": json.dumps([row[0] for row in ids])}).fetchall()
    assert [row[0] for row in rows] == ["c"]
    empty = db.execute("SELECT COUNT(*) FROM json_each(?)", ("[]",)).fetchone()
    assert empty is not None and empty[0] == 0
