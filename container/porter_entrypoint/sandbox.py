"""The agent's sandbox: bubblewrap (`bwrap`) around every process the agent starts (stdlib only).

The agent is untrusted code. It runs in new user, PID, IPC, UTS and cgroup namespaces as uid
1000 of its own user namespace, in a mount namespace that shows:

  /usr (and the /bin, /lib... links or directories)   read-only, as on the host
  a curated, world-readable part of /etc              read-only; passwd and group made up here
  /workspace                                          the checkout, read-write
  /home/agent, /tmp                                   private to the run, read-write
  /run/porter/prompt.md                               the prompt, read-only
  /proc                                               the sandbox's own processes only

and nothing else: not the entrypoint's environment, workspace or run token, not Porter's data,
not other runs. The network is kept (the agent calls its model API). When the sandbox's first
process ends, the kernel ends every process of the sandbox's PID namespace, and nothing outside
it is touched. `--die-with-parent` ends it too if bwrap or the entrypoint dies.

`Jail` is how the entrypoint starts the agent's processes: in this sandbox, or bare when the
operator turned it off (--porter-unsandboxed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass

BWRAP = "bwrap"
INSTALL_HINT = "install the `bubblewrap` package (Debian/Ubuntu: apt-get install bubblewrap)"
WORKSPACE = "/workspace"
HOME = "/home/agent"
PROMPT = "/run/porter/prompt.md"
AGENT_UID = 1000
AGENT_USER = "agent"
# The host's root-level system paths: directories are bound read-only, symlinks (usrmerge) kept.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What programs need from /etc, and nothing that tends to hold credentials or host secrets:
# certificates but not /etc/ssl/private. A Porter run as root runs bwrap as root, and root's
# files then look like the agent's own inside, so nothing root-only may be shown.
ETC_ENTRIES = (
    "alternatives", "ca-certificates", "ca-certificates.conf", "crypto-policies", "debian_version",
    "gai.conf", "host.conf", "hosts", "inputrc", "ld.so.cache", "ld.so.conf", "ld.so.conf.d",
    "locale.alias", "localtime", "magic", "mime.types", "nsswitch.conf", "os-release",
    "pki/ca-trust", "pki/tls/certs", "pki/tls/openssl.cnf", "protocols", "resolv.conf",
    "services", "ssl/certs", "ssl/openssl.cnf", "terminfo", "timezone",
)
SELF_CHECK_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Policy:
    """What the operator adds to the default view, and what must stay hidden whatever is added."""

    read_only: tuple[str, ...] = ()  # extra host paths shown read-only at the same place
    hidden: tuple[str, ...] = ()  # host paths masked wherever a read-only path would show them
    bwrap: str = BWRAP


@dataclass(frozen=True)
class Mounts:
    """The run's own host directories behind the sandbox's writable paths."""

    checkout: str
    home: str
    tmp: str
    etc: str  # where the made-up passwd and group are written
    prompt: str | None = None


class SandboxUnavailable(Exception):
    """bwrap is missing or cannot build a sandbox here; the message says why and what to do."""


def strictly_under(path: str, roots: Iterable[str]) -> bool:
    real = os.path.realpath(path)
    return any(real.startswith(r.rstrip("/") + "/")
               for r in (os.path.realpath(root) for root in roots))


def system_binds() -> list[str]:
    """Bind the system paths read-only, keeping the host's symlinks (e.g. /bin -> usr/bin)."""
    args: list[str] = []
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def etc_binds(etc: str = "/etc") -> list[str]:
    """The curated /etc: only entries anyone on the host may read anyway."""
    args: list[str] = []
    for name in ETC_ENTRIES:
        path = os.path.join(etc, name)
        try:
            mode = os.stat(path).st_mode  # follows links: what the bind would show
        except OSError:
            continue
        if mode & 0o004:
            args += ["--ro-bind", path, os.path.join("/etc", name)]
    return args


def write_identity_files(etc: str) -> None:
    """passwd and group naming the agent, so tools that look the user up (git, ssh) work."""
    os.makedirs(etc, exist_ok=True)
    with open(os.path.join(etc, "passwd"), "w", encoding="utf-8") as fh:
        fh.write(f"root:x:0:0:root:/root:/bin/sh\n"
                 f"{AGENT_USER}:x:{AGENT_UID}:{AGENT_UID}:Porter agent:{HOME}:/bin/sh\n"
                 "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    with open(os.path.join(etc, "group"), "w", encoding="utf-8") as fh:
        fh.write(f"root:x:0:\n{AGENT_USER}:x:{AGENT_UID}:\nnogroup:x:65534:\n")


def hide_binds(policy: Policy) -> list[str]:
    """Mask Porter's own files wherever an exposed path would otherwise show them.

    Only paths strictly inside an exposed one: masking an exposed root itself would hide what
    the operator asked to show (and could hide /usr).
    """
    exposed = [*SYSTEM_PATHS, "/etc", *policy.read_only]
    args: list[str] = []
    for path in policy.hidden:
        if not os.path.isabs(path) or not os.path.exists(path) \
                or not strictly_under(path, exposed):
            continue
        real = os.path.realpath(path)
        if os.path.isdir(real):
            args += ["--tmpfs", real, "--remount-ro", real]
        else:
            args += ["--ro-bind", "/dev/null", real]
    return args


def command(policy: Policy, mounts: Mounts, argv: list[str], *, cwd: str = WORKSPACE) -> list[str]:
    """The bwrap command line that runs `argv` in the run's sandbox."""
    args = [
        policy.bwrap,
        "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try", "--disable-userns",
        "--uid", str(AGENT_UID), "--gid", str(AGENT_UID), "--hostname", "porter-agent",
        "--die-with-parent", "--new-session",
        *system_binds(),
        "--dir", "/etc", *etc_binds(),
        "--ro-bind", os.path.join(mounts.etc, "passwd"), "/etc/passwd",
        "--ro-bind", os.path.join(mounts.etc, "group"), "/etc/group",
        "--proc", "/proc", "--dev", "/dev",
        "--bind", mounts.tmp, "/tmp",  # noqa: S108 - the run's own tmp, not the host's
        "--bind", mounts.home, HOME,
        "--bind", mounts.checkout, WORKSPACE,
    ]
    if mounts.prompt is not None:
        args += ["--ro-bind", mounts.prompt, PROMPT]
    for path in policy.read_only:
        args += ["--ro-bind-try", path, path]
    args += hide_binds(policy)
    # The root (bwrap's tmpfs, /etc's directory included) read-only: only the binds above write.
    args += ["--remount-ro", "/", "--chdir", cwd, "--", *argv]
    return args


def prepare(workspace: str, checkout: str) -> Mounts:
    """The run's private home, tmp and identity files, beside its checkout."""
    mounts = Mounts(
        checkout=checkout,
        home=os.path.join(workspace, "home"),
        tmp=os.path.join(workspace, "tmp"),
        etc=os.path.join(workspace, "etc"),
    )
    for path in (mounts.home, mounts.tmp):
        os.makedirs(path, mode=0o700, exist_ok=True)
    write_identity_files(mounts.etc)
    return mounts


def self_check(policy: Policy) -> None:
    """Build a throwaway sandbox and run `true` in it; raise SandboxUnavailable if that fails."""
    if shutil.which(policy.bwrap) is None:
        raise SandboxUnavailable(f"bubblewrap ({policy.bwrap}) is not on PATH: {INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="porter-sandbox-check-") as workspace:
        checkout = os.path.join(workspace, "work")
        os.mkdir(checkout)
        argv = command(policy, prepare(workspace, checkout), ["true"])
        try:
            probe = subprocess.run(argv, capture_output=True, timeout=SELF_CHECK_TIMEOUT_S,
                                   stdin=subprocess.DEVNULL, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SandboxUnavailable(f"bubblewrap failed its self-check: {exc}") from None
    if probe.returncode != 0:
        detail = probe.stderr.decode("utf-8", "replace").strip().splitlines() or ["no output"]
        raise SandboxUnavailable(
            f"bubblewrap failed its self-check (exit {probe.returncode}): {detail[-1]}; it "
            "needs unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
            "user.max_user_namespaces > 0) and bubblewrap 0.8 or newer"
        )


@dataclass(frozen=True)
class Jail:
    """How the agent's processes are started: in the sandbox, or (operator's choice) bare."""

    policy: Policy | None
    mounts: Mounts

    @property
    def home(self) -> str:
        return HOME if self.policy else self.mounts.home

    @property
    def tmp(self) -> str:
        return "/tmp" if self.policy else self.mounts.tmp  # noqa: S108 - the run's own tmp

    @property
    def prompt_file(self) -> str:
        return PROMPT if self.policy else (self.mounts.prompt or "")

    def argv(self, argv: list[str]) -> list[str]:
        return command(self.policy, self.mounts, argv) if self.policy else argv
