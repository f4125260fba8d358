"""The documentation that is generated must match what generates it."""

from __future__ import annotations

from porter.settings import SETTINGS, settings_markdown
from porter.states import TRANSITIONS
from tests.conftest import ROOT


def test_settings_reference_is_current() -> None:
    written = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert written == settings_markdown(), (
        "docs/settings.md is stale: uv run python -m porter.settings > docs/settings.md")


def test_every_setting_is_documented_in_the_reference() -> None:
    text = settings_markdown()
    for setting in SETTINGS:
        assert f"`{setting.name}`" in text


def test_the_architecture_page_lists_every_task_transition() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    listed = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 2 and cells[0] in {s.value for s in TRANSITIONS}:
            listed[cells[0]] = {t.strip() for t in cells[1].split(",")}
    assert listed == {s.value: {t.value for t in to} for s, to in TRANSITIONS.items() if to}
