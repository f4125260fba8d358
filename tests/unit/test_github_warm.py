"""The REST namespaces Porter calls are loaded by warm_up, not by the first requester's call."""

from __future__ import annotations

import subprocess
import sys

from porter.github_warm import NAMESPACES


def loaded_after(code: str) -> set[str]:
    """The githubkit REST namespaces imported in a fresh interpreter after running `code`."""
    probe = (f"import sys\n{code}\n"
             "print(' '.join(sorted({m.rsplit('.', 1)[1] for m in sys.modules "
             "if m.startswith('githubkit') and '.rest.' in m})))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, timeout=120)
    return set(result.stdout.split())


def test_warm_up_loads_every_namespace_porter_calls() -> None:
    cold = loaded_after("import porter.runtime")
    warm = loaded_after("import porter.runtime\nfrom porter.github_warm import warm_up\nwarm_up()")
    assert not set(NAMESPACES) & cold  # starting Porter alone leaves them to the first call
    assert set(NAMESPACES) <= warm
