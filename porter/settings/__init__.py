"""Operator settings, parsed once from a mapping. Only the CLI reads `os.environ`.

`declared` holds the declaration (each setting once, as a field of `Settings`), `parse` the value
parsers and `Secret`, `dotenv` the `.env` format, `reference` how settings are shown.
"""

from porter.settings.declared import CAPABILITIES, SETTINGS, Settings
from porter.settings.dotenv import parse_dotenv
from porter.settings.parse import Secret
from porter.settings.reference import masked, settings_markdown

__all__ = [
    "CAPABILITIES",
    "SETTINGS",
    "Secret",
    "Settings",
    "masked",
    "parse_dotenv",
    "settings_markdown",
]
