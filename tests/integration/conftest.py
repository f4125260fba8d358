"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest

from tests.fakes.github_auth import generate_private_key_pem


@pytest.fixture(scope="session")
def pem() -> str:
    """One App key for the session: RSA key generation is slow."""
    return generate_private_key_pem()
