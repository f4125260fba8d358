"""The documentation that is generated must match what generates it."""

from __future__ import annotations

from porter.settings import SETTINGS, settings_markdown
from tests.conftest import ROOT


def test_settings_reference_is_current() -> None:
    written = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert written == settings_markdown(), (
        "docs/settings.md is stale: uv run python -m porter.settings > docs/settings.md")


def test_every_setting_is_documented_in_the_reference() -> None:
    text = settings_markdown()
    for setting in SETTINGS:
        assert f"`{setting.name}`" in text
