"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest

from tests.fakes.world import app_key


@pytest.fixture(scope="session")
def pem() -> str:
    """One App key for the session: RSA key generation is slow."""
    return app_key()
