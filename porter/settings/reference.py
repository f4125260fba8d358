"""How settings are shown to people: `porter doctor`'s values and docs/settings.md."""

from __future__ import annotations

from typing import Any

from porter.settings.declared import SETTINGS, Setting


def masked(declared: Setting, value: Any) -> str:
    if value is None or value == () or value == {}:
        return "-"
    if declared.secret:
        return "set (hidden)"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def settings_markdown() -> str:
    """docs/settings.md, generated from the declaration (tests/unit/test_docs.py checks it)."""
    lines = [
        "# Settings",
        "",
        "Generated from `porter/settings/declared.py`:"
        " `uv run python -m porter.settings > docs/settings.md`.",
        "Set them in the environment or in a `.env` file in the working directory (the environment",
        "wins). `uv run porter doctor` prints the values in force, secrets masked.",
        "",
        "| name | default | what it is |",
        "|---|---|---|",
    ]
    for declared in SETTINGS:
        default = ("—" if declared.default in (None, ())
                   else f"`{masked(declared, declared.default)}`")
        secret = " Secret: never printed." if declared.secret else ""
        lines.append(f"| `{declared.name}` | {default} | {declared.help}{secret} |")
    lines += [
        "| `PORTER_AGENT_<NAME>_COMMAND` | — | Defines or overrides agent `<name>`: "
        "a command line, "
        "split like a shell (never run through one), run in the checkout; the prompt arrives on "
        "stdin and in the file named by `PORTER_PROMPT_FILE`. |",
        "| `PORTER_AGENT_<NAME>_KEYS` | — | Comma-separated environment names agent `<name>` "
        "receives from the secrets below. |",
        "| `PORTER_AGENT_<NAME>_DIALECT` | `none` | The model API agent `<name>` speaks: "
        "`anthropic`, `openai` or `gemini` (it then gets a gateway token and base URLs, never a "
        "model key), or `none` (its keys travel to the machine as they are, and the task page "
        "says so). |",
        "| `PORTER_SECRET_<ENVNAME>` | — | An operator-wide secret (e.g. "
        "`PORTER_SECRET_ANTHROPIC_API_KEY`): the gateway adds it to agents' model calls, and "
        "an agent that cannot use the gateway receives the names it declares. Secret: redacted "
        "from every log, comment and PR. |",
        "",
    ]
    return "\n".join(lines)
