"""container/entrypoint.py and its sandbox module, imported in-process to test their pure parts.

The entrypoint runs as a script beside `sandbox.py` and imports it by that name, so both are
loaded from container/ and registered under those names.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

CONTAINER = Path(__file__).resolve().parents[2] / "container"


def load(name: str) -> ModuleType:
    """`sandbox` or `entrypoint` from container/, loaded once."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, CONTAINER / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    if name == "entrypoint":
        load("sandbox")
    spec.loader.exec_module(module)
    return module
