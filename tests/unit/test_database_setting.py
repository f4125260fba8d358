"""PORTER_DATABASE: a SQLite path, `sqlite:PATH`, or a PostgreSQL URL whose password is never
shown; PORTER_DATA_DIR: where runs and the generated key ring go when the database is no file."""

from __future__ import annotations

from pathlib import Path

import pytest

from porter.errors import ConfigError
from porter.settings import Settings, masked
from porter.settings.database import DatabaseUrl, without_password
from porter.settings.declared import BY_NAME

URL = "postgresql://porter:hunter2-pw@db.internal:5432/porter"


def settings(**env: str) -> Settings:
    return Settings.from_mapping({f"PORTER_{k.upper()}": v for k, v in env.items()})


@pytest.mark.parametrize(("raw", "path"), [
    ("data/porter.db", Path("data/porter.db")),
    ("/var/lib/porter/porter.db", Path("/var/lib/porter/porter.db")),
    ("sqlite:data/porter.db", Path("data/porter.db")),
    ("sqlite:///var/lib/porter.db", Path("/var/lib/porter.db")),
    ("SQLite:/srv/p.db", Path("/srv/p.db")),
])
def test_a_path_or_sqlite_prefix_is_a_sqlite_file(raw: str, path: Path) -> None:
    found = settings(database=raw)
    assert found.database == found.database_file == found.store_location == path
    assert found.runs_dir == path.parent / "runs"
    assert found.keys_file == path.with_name(path.name + ".keys")  # where it always was


def test_a_home_path_is_expanded() -> None:
    assert settings(database="sqlite:~/p.db").database == Path.home() / "p.db"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_postgresql_url_selects_postgresql(scheme: str) -> None:
    url = URL.replace("postgresql", scheme, 1)
    found = settings(database=url)
    assert isinstance(found.database, DatabaseUrl)
    assert found.database_file is None
    assert found.store_location == url  # the driver gets the password
    assert found.data_directory == Path("porter-data")
    assert found.runs_dir == Path("porter-data/runs")
    assert found.keys_file == Path("porter-data/porter.keys")


def test_the_data_dir_holds_runs_and_keys_on_postgresql(tmp_path: Path) -> None:
    found = settings(database=URL, data_dir=str(tmp_path))
    assert (found.runs_dir, found.keys_file) == (tmp_path / "runs", tmp_path / "porter.keys")


def test_on_sqlite_the_data_dir_moves_runs_but_never_the_key_ring(tmp_path: Path) -> None:
    found = settings(database="/srv/porter.db", data_dir=str(tmp_path))
    assert found.runs_dir == tmp_path / "runs"
    assert found.keys_file == Path("/srv/porter.db.keys")


def test_the_password_is_never_shown() -> None:
    found = settings(database=URL)
    shown = [str(found.database), repr(found.database), f"{found.database}",
             masked(BY_NAME["PORTER_DATABASE"], found.database)]
    for text in shown:
        assert "hunter2-pw" not in text
        assert "porter:***@db.internal:5432/porter" in text
    assert "hunter2-pw" not in repr(found)
    assert found.database.redact("FATAL: password hunter2-pw refused") == \
        "FATAL: password *** refused"


@pytest.mark.parametrize("raw", [
    "mysql://porter:hunter2-pw@db/porter",
    "https://porter:hunter2-pw@db/porter",
    "postgresql:porter:hunter2-pw@db",  # no //: not a URL libpq reads
    "sqlite:",
])
def test_anything_else_is_refused_without_its_password(raw: str) -> None:
    with pytest.raises(ConfigError) as refused:
        settings(database=raw)
    message = str(refused.value)
    assert message.startswith("PORTER_DATABASE: expected ")
    assert "postgresql://" in message
    assert "hunter2-pw" not in message


def test_a_bad_port_is_refused_without_the_password() -> None:
    with pytest.raises(ConfigError) as refused:
        settings(database="postgresql://porter:hunter2-pw@db:99999/porter")
    assert "port" in str(refused.value)
    assert "hunter2-pw" not in str(refused.value)
    assert "porter:***@db:99999" in str(refused.value)


def test_without_password_masks_urls_in_any_text() -> None:
    assert without_password(f"could not open {URL}") == \
        "could not open postgresql://porter:***@db.internal:5432/porter"
    assert without_password("postgresql://db/p?user=a&password=s3cret&x=1") == \
        "postgresql://db/p?user=a&password=***&x=1"
    assert without_password("postgresql://porter@db/p") == "postgresql://porter@db/p"


def test_the_sandbox_hides_the_data_dir_on_postgresql(tmp_path: Path) -> None:
    from porter.runners.sandbox import porter_files

    hidden = porter_files(settings(database=URL, data_dir=str(tmp_path)))
    assert {str(tmp_path), str(tmp_path / "runs"), str(tmp_path / "porter.keys")} <= set(hidden)
    assert not any("postgresql" in path or "hunter2" in path for path in hidden)


def test_log_lines_redact_the_database_password() -> None:
    from porter.logs import configured_secrets

    assert "hunter2-pw" in configured_secrets(settings(database=URL))
    assert configured_secrets(settings(database="porter.db")) == []
