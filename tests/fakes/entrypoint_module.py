"""The container entrypoint package (container/porter_entrypoint/), imported in-process to test
its pure parts.

In the image and under the local runner it runs as a program (its directory, or a zipapp of
it); here container/ is put on sys.path once, so it imports as the package `porter_entrypoint`
with the same module names its own modules use for each other.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

CONTAINER = Path(__file__).resolve().parents[2] / "container"
PACKAGE = CONTAINER / "porter_entrypoint"  # what the local runner runs: `python <PACKAGE>`


def load(name: str) -> ModuleType:
    """`porter_entrypoint.<name>` (e.g. `spec`, `sandbox`, `output`), imported once."""
    if str(CONTAINER) not in sys.path:
        sys.path.append(str(CONTAINER))
    return importlib.import_module(f"porter_entrypoint.{name}")
