"""The agent's bwrap command line (container/porter_entrypoint/sandbox.py) and how Porter asks
for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from porter.runners.sandbox import SandboxPolicy, porter_files
from porter.settings import Settings
from tests.fakes.entrypoint_module import load

sandbox = load("sandbox")
spec = load("spec")


def mounts(tmp_path: Path) -> object:
    checkout = tmp_path / "work"
    checkout.mkdir()
    return sandbox.prepare(str(tmp_path), str(checkout))


def pairs(argv: list[str], flag: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == flag]


def test_every_namespace_but_the_network_is_new_and_the_sandbox_dies_with_its_parent(
    tmp_path: Path,
) -> None:
    argv = sandbox.command(sandbox.Policy(), mounts(tmp_path), ["claude", "-p"])
    for flag in ("--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                 "--disable-userns", "--die-with-parent", "--new-session"):
        assert flag in argv
    assert "--unshare-net" not in argv and "--share-net" not in argv
    assert argv[argv.index("--uid") + 1] == "1000"
    assert argv[-3:] == ["--", "claude", "-p"]


def test_only_the_runs_own_directories_are_writable_and_the_root_is_read_only(
    tmp_path: Path,
) -> None:
    argv = sandbox.command(sandbox.Policy(), mounts(tmp_path), ["true"])
    assert sorted(pairs(argv, "--bind")) == sorted([
        (str(tmp_path / "tmp"), "/tmp"),
        (str(tmp_path / "home"), "/home/agent"),
        (str(tmp_path / "work"), "/workspace"),
    ])
    remount = argv.index("--remount-ro")
    assert argv[remount + 1] == "/" and remount > max(
        i for i, a in enumerate(argv) if a in ("--bind", "--ro-bind", "--ro-bind-try"))
    assert tuple(argv[argv.index("--chdir"):][:2]) == ("--chdir", "/workspace")


def test_etc_shows_only_world_readable_entries(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    (etc / "ssl" / "certs").mkdir(parents=True)
    (etc / "hosts").write_text("127.0.0.1 localhost\n")
    (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    (etc / "resolv.conf").chmod(0o600)  # root-only on this host: not shown
    (etc / "shadow").write_text("root:x\n")  # never in the list, whatever its mode
    binds = pairs(sandbox.etc_binds(str(etc)), "--ro-bind")
    assert sorted(dest for _, dest in binds) == ["/etc/hosts", "/etc/ssl/certs"]


def test_porters_files_are_masked_only_inside_an_exposed_path(tmp_path: Path) -> None:
    exposed = tmp_path / "opt"
    (exposed / "data").mkdir(parents=True)
    (exposed / "data" / "porter.db").write_text("")
    (exposed / "key.pem").write_text("")
    elsewhere = tmp_path / "elsewhere.pem"
    elsewhere.write_text("")
    policy = sandbox.Policy(
        read_only=(str(exposed),),
        hidden=(str(exposed / "data"), str(exposed / "key.pem"), str(elsewhere), str(exposed)),
    )
    argv = sandbox.hide_binds(policy)
    assert ("--tmpfs", str(exposed / "data")) == tuple(argv[0:2])
    assert ("/dev/null", str(exposed / "key.pem")) in pairs(argv, "--ro-bind")
    assert str(elsewhere) not in argv  # not visible anyway
    assert argv.count(str(exposed)) == 0  # an exposed root itself is never masked away


def test_the_runners_arguments_are_what_the_entrypoint_reads(tmp_path: Path) -> None:
    settings = Settings.from_mapping({
        "PORTER_DATABASE": str(tmp_path / "data" / "porter.db"),
        "PORTER_SANDBOX_READ_ONLY_PATHS": "/opt/tools:/srv/cli",
        "PORTER_GITHUB_PRIVATE_KEY_FILE": str(tmp_path / "app.pem"),
    })
    policy = SandboxPolicy.from_settings(settings)
    parsed = spec.sandbox_policy(["--porter-run=r1", *policy.argv()])
    assert parsed.read_only == ("/opt/tools", "/srv/cli")
    assert set(parsed.hidden) >= {str(tmp_path / "data" / "porter.db"),
                                  str(tmp_path / "data" / "porter.db.keys"),
                                  str(tmp_path / "app.pem"), str(tmp_path / "data")}
    assert set(porter_files(settings)) == set(parsed.hidden)
    off = SandboxPolicy.from_settings(Settings.from_mapping(
        {"PORTER_LOCAL_RUNNER_UNSANDBOXED": "true"}))
    assert spec.sandbox_policy(off.argv()) is None


def test_the_runs_home_and_tmp_are_private_and_the_agent_has_a_name(tmp_path: Path) -> None:
    prepared = mounts(tmp_path)
    for path in (prepared.home, prepared.tmp):
        assert Path(path).stat().st_mode & 0o777 == 0o700
    passwd = (tmp_path / "etc" / "passwd").read_text()
    assert "agent:x:1000:1000:Porter agent:/home/agent:/bin/sh\n" in passwd
    assert "agent:x:1000:\n" in (tmp_path / "etc" / "group").read_text()
    argv = sandbox.command(sandbox.Policy(), prepared, ["true"])
    assert (str(tmp_path / "etc" / "passwd"), "/etc/passwd") in pairs(argv, "--ro-bind")


def test_system_paths_keep_the_hosts_symlinks() -> None:
    binds = sandbox.system_binds()
    for path in sandbox.SYSTEM_PATHS:
        if Path(path).is_symlink():
            assert ("--symlink", str(Path(path).readlink()), path) in zip(
                binds, binds[1:], binds[2:], strict=False)
        elif Path(path).is_dir():
            assert (path, path) in pairs(binds, "--ro-bind")


def test_operator_paths_are_read_only_and_the_prompt_only_when_there_is_one(
    tmp_path: Path,
) -> None:
    policy = sandbox.Policy(read_only=("/opt/aider", "/srv/cli"))
    argv = sandbox.command(policy, mounts(tmp_path), ["true"])
    assert pairs(argv, "--ro-bind-try") == [("/opt/aider", "/opt/aider"), ("/srv/cli", "/srv/cli")]
    assert sandbox.PROMPT not in argv


def test_without_bwrap_the_self_check_says_what_to_install() -> None:
    policy = sandbox.Policy(bwrap="/nonexistent/bwrap")
    with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install bubblewrap"):
        sandbox.self_check(policy)
