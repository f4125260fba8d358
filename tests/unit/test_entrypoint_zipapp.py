"""The entrypoint as the image ships it: one zipapp of container/porter_entrypoint/, built as
container/Dockerfile builds it (`python3 -m zipapp <package dir> -o porter-entrypoint.pyz`), and
the package directory itself, as the local runner runs it. Each starts in a bare environment and
answers as the runner expects (a subprocess, but no network, no git and no agent: fast)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.fakes.entrypoint_module import PACKAGE
from tests.fakes.sandbox import needs_bwrap


@pytest.fixture(scope="module")
def zipapp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = tmp_path_factory.mktemp("zipapp")
    # What the image's build context holds (.dockerignore leaves compiled files out).
    source = shutil.copytree(PACKAGE, build / "porter_entrypoint",
                             ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    target = build / "porter-entrypoint.pyz"
    subprocess.run([sys.executable, "-m", "zipapp", str(source), "-o", str(target)],
                   check=True, capture_output=True, timeout=60)
    return target


@pytest.fixture(params=["zipapp", "directory"])
def entrypoint(request: pytest.FixtureRequest, zipapp: Path) -> Path:
    return zipapp if request.param == "zipapp" else PACKAGE


def run(entrypoint: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # The environment is empty but for PATH (to find bwrap): what the machine was not given.
    return subprocess.run([sys.executable, str(entrypoint), *args], cwd=cwd,
                          env={"PATH": "/usr/local/bin:/usr/bin:/bin"}, capture_output=True,
                          text=True, timeout=60, check=False)


def test_without_its_environment_it_exits_2_saying_what_is_missing(
    entrypoint: Path, tmp_path: Path
) -> None:
    ran = run(entrypoint, "--porter-sandbox-ro=/opt/aider", cwd=tmp_path)
    assert ran.returncode == 2
    assert ran.stderr == (
        "porter: missing environment: PORTER_URL, PORTER_RUN_ID, PORTER_RUN_TOKEN\n")


def test_a_bad_sandbox_argument_fails_the_sandbox_check_with_exit_3(
    entrypoint: Path, tmp_path: Path
) -> None:
    ran = run(entrypoint, "--porter-sandbox-check", "--porter-sandbox-ro=opt", cwd=tmp_path)
    assert (ran.returncode, ran.stderr) == (3, "sandbox paths must be absolute: 'opt'\n")


@needs_bwrap
def test_the_zipapp_passes_the_sandbox_check(zipapp: Path, tmp_path: Path) -> None:
    ran = run(zipapp, "--porter-sandbox-check", "--porter-sandbox-ro=/opt/aider", cwd=tmp_path)
    assert (ran.returncode, ran.stderr) == (0, "")


def test_the_zipapp_holds_the_whole_package_and_nothing_compiled(zipapp: Path) -> None:
    with zipfile.ZipFile(zipapp) as archive:
        names = sorted(archive.namelist())
    assert names == sorted(p.name for p in PACKAGE.glob("*.py"))
