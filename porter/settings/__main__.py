"""`python -m porter.settings` prints docs/settings.md."""

from porter.settings.reference import settings_markdown

print(settings_markdown(), end="")
