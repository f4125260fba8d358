"""A repository's `.porter.yml` → RepoConfig, or the problems its developers must fix. Pure.

The file is untrusted (anyone who can push to the default branch writes it), so it is bounded
before and while it is read: its size, its nesting, its node count (aliases expanded, so an alias
bomb is refused rather than expanded), each list and text. Values are built from PyYAML's nodes
here rather than by a constructor, so every problem carries the line it is on, unknown keys and
wrong types are reported instead of ignored, and no tag can construct anything but plain scalars.
The operator's limits (Bounds) cap what a repository may ask for. docs/repo-config.md describes
the file.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import yaml

from porter.repo_config_schema import FIELDS, MISSING, described, shown

FILE_NAME = ".porter.yml"
MAX_FILE_BYTES = 64 * 1024
MAX_NODES = 10_000
MAX_DEPTH = 20
MAX_PROBLEMS = 20  # past this, "and N more": the list goes on a status comment


@dataclass(frozen=True)
class Bounds:
    """What this Porter lets a repository ask for (from the operator's settings)."""

    max_timeout_s: int
    max_budget_usd: float | None  # None: the operator sets no per-run budget
    agents: frozenset[str]  # the agents this Porter has configured
    default_branch_prefix: str = "porter"
    default_agent: str | None = None


@dataclass(frozen=True)
class RepoConfig:
    """A valid `.porter.yml`. None (or empty) means the repository leaves it to the operator."""

    agent: str | None = None
    model: str | None = None
    agents: tuple[str, ...] | None = None  # None: every configured agent
    setup: tuple[str, ...] = ()
    verify: tuple[str, ...] = ()
    timeout_s: int | None = None
    verify_timeout_s: int | None = None
    budget_usd: float | None = None
    branch_prefix: str = "porter"
    draft: bool = False
    protected_paths: tuple[str, ...] = ()
    instructions: str = ""


@dataclass(frozen=True)
class Problem:
    line: int  # 1-based
    key: str  # `verify[2]`; "" for the file as a whole
    message: str

    def __str__(self) -> str:
        where = f"{self.key}: " if self.key else ""
        return f"{FILE_NAME} line {self.line}: {where}{self.message}"


@dataclass(frozen=True)
class ConfigProblems:
    """Why the file was refused, in line order."""

    problems: tuple[Problem, ...]
    more: int = 0  # problems left out past MAX_PROBLEMS

    def __str__(self) -> str:
        lines = [str(problem) for problem in self.problems]
        if self.more:
            lines.append(f"… and {self.more} more")
        return "\n".join(lines)


def parse_repo_config(text: str | bytes, *, bounds: Bounds) -> RepoConfig | ConfigProblems:
    """The file's text → RepoConfig, or every problem found (never raises on the file's text)."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if len(data) > MAX_FILE_BYTES:
        return _refused(1, f"is {len(data):,} bytes; at most {MAX_FILE_BYTES:,}")
    try:
        decoded = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return _refused(data.count(b"\n", 0, error.start) + 1, "is not UTF-8 text")
    try:
        root = _compose(decoded)
    except _Refused as refused:
        return _refused(refused.line, refused.message)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        said = ", ".join(part for part in (error.context, error.problem) if part)
        said = said if len(said) <= 200 else said[:200] + "…"  # may quote an alias name
        return _refused(line, f"is not valid YAML: {said}")
    except yaml.reader.ReaderError as error:
        line = decoded.count("\n", 0, error.position) + 1
        char = error.character
        code = ord(char) if isinstance(char, str) else int(char)
        return _refused(line, f"is not valid YAML: character U+{code:04X} is not allowed")
    except yaml.YAMLError as error:
        return _refused(1, f"is not valid YAML: {str(error)[:200]}")
    if root is None:
        return RepoConfig(branch_prefix=bounds.default_branch_prefix)
    return FileReader(bounds).read(root)


class _Refused(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _Loader(yaml.SafeLoader):
    """SafeLoader that stops at MAX_DEPTH levels and MAX_NODES nodes while composing: its
    composer recurses once per level, so deep nesting would otherwise end in RecursionError."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._nodes += 1
        line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
        if self._nodes > MAX_NODES:
            raise _Refused(line, f"has more than {MAX_NODES:,} values; refused")
        if self._depth >= MAX_DEPTH:
            raise _Refused(line, f"nests more than {MAX_DEPTH} levels deep; refused")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _compose(text: str) -> yaml.Node | None:
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    finally:
        loader.dispose()
    if root is not None:
        _check_expansion(root)
    return root


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a tree that aliases would expand past MAX_NODES (or forever: an anchor may contain
    its own alias). Walks the expanded tree without building it, and stops at the cap."""
    stack, seen = [root], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise _Refused(node.start_mark.line + 1,
                           f"expands to more than {MAX_NODES:,} values through anchors and "
                           "aliases; refused")
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))


def _refused(line: int, message: str) -> ConfigProblems:
    return ConfigProblems((Problem(line, "", f"the file {message}"),))


_NULL = "tag:yaml.org,2002:null"


class FileReader:
    """Walks the top-level mapping, key by key, collecting problems instead of stopping."""

    def __init__(self, bounds: Bounds) -> None:
        self.bounds = bounds
        self.problems: list[Problem] = []
        self.failed: set[str] = set()  # keys already reported: no second problem about them
        self.constructor = yaml.constructor.SafeConstructor()

    def read(self, root: yaml.Node) -> RepoConfig | ConfigProblems:
        if not isinstance(root, yaml.MappingNode):
            return ConfigProblems((Problem(_line(root), "", "the file must be a mapping of keys "
                                           f"such as `verify:`, not {_kind_of(root)}"),))
        values: dict[str, object] = {}
        lines: dict[str, int] = {}
        for key_node, value_node in root.value:
            key = self.key(key_node, lines)
            if key is None:
                continue
            lines[key] = _line(key_node)
            if value_node.tag == _NULL:
                continue  # `key:` with nothing after it leaves the default
            checked = FIELDS[key](self, value_node, key)
            if checked is MISSING:
                self.failed.add(key)
            else:
                values[key] = checked
        self.check_agents(values, lines)
        if self.problems:
            ordered = sorted(self.problems, key=lambda problem: problem.line)
            return ConfigProblems(tuple(ordered[:MAX_PROBLEMS]),
                                  more=max(0, len(ordered) - MAX_PROBLEMS))
        return _config(values, self.bounds)

    def problem(self, node: yaml.Node | int, key: str, message: str) -> object:
        line = node if isinstance(node, int) else _line(node)
        self.problems.append(Problem(line, key, message))
        return MISSING

    def key(self, node: yaml.Node, lines: dict[str, int]) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self.problem(node, "", f"a key must be a name, not {_kind_of(node)}")
            return None
        key = str(node.value)
        if key in lines:
            self.problem(node, key, f"is set twice (also on line {lines[key]})")
            return None
        if key not in FIELDS:
            hint = difflib.get_close_matches(key, FIELDS, n=1, cutoff=0.6)
            known = f"did you mean `{hint[0]}`?" if hint else "see docs/repo-config.md for keys"
            what = "merge keys (<<) are not supported" if key == "<<" \
                else f"is not a {FILE_NAME} key; {known}"
            self.problem(node, _shown_key(key), what)
            return None
        return key

    def scalar(self, node: yaml.Node, key: str) -> object:
        """The plain value of a scalar node (str, int, float, bool or None), or MISSING."""
        if not isinstance(node, yaml.ScalarNode):
            return self.problem(node, key, f"must be a single value, not {_kind_of(node)}")
        try:
            value = self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError:
            return self.problem(node, key, f"uses the YAML tag {shown(node.tag)}, which "
                                f"{FILE_NAME} does not read")
        except ValueError:  # a number too long for int()
            return self.problem(node, key, f"cannot read {shown(node.value)} as a value")
        if value is None or isinstance(value, str | int | float | bool):
            return value
        return self.problem(node, key, f"must be text, a number or true/false, not {node.tag}")

    def text(self, node: yaml.Node, key: str, limit: int) -> object:
        value = self.scalar(node, key)
        if value is MISSING:
            return value
        if not isinstance(value, str):
            return self.problem(node, key, f"must be text, not {described(value)}")
        if "\x00" in value:
            return self.problem(node, key, "may not contain a NUL character")
        if len(value) > limit:
            return self.problem(node, key, f"is {len(value):,} characters long; at most {limit:,}")
        return value

    def texts(self, node: yaml.Node, key: str, limit: int, item_limit: int,
              noun: str) -> object:
        if not isinstance(node, yaml.SequenceNode):
            return self.problem(node, key, f"must be a list of {noun}s, such as [\"…\"]")
        if len(node.value) > limit:
            return self.problem(node, key, f"has {len(node.value)} {noun}s; at most {limit}")
        items: list[str] = []
        for index, item_node in enumerate(node.value):
            path = f"{key}[{index}]"
            item = self.text(item_node, path, item_limit)
            if isinstance(item, str) and not item.strip():
                item = self.problem(item_node, path, f"is an empty {noun}")
            if isinstance(item, str):
                items.append(item)
        return tuple(items) if len(items) == len(node.value) else MISSING

    def check_agents(self, values: dict[str, object], lines: dict[str, int]) -> None:
        allowed = values.get("agents")
        agent = values.get("agent")
        if isinstance(allowed, tuple) and isinstance(agent, str) and agent not in allowed:
            self.problem(lines["agent"], "agent",
                         f"{agent} is not among the `agents:` this file allows")
        default = self.bounds.default_agent
        if isinstance(allowed, tuple) and agent is None and "agent" not in self.failed \
                and default is not None and default not in allowed:
            self.problem(lines["agents"], "agents",
                         f"leaves out {default}, this Porter's default agent: also set `agent:` "
                         "to one of them")


# YAML key → RepoConfig field, where the names differ.
_RENAMED = {"timeout": "timeout_s", "verify_timeout": "verify_timeout_s"}


def _config(values: dict[str, object], bounds: Bounds) -> RepoConfig:
    fields: dict[str, Any] = {"branch_prefix": bounds.default_branch_prefix}
    fields.update({_RENAMED.get(key, key): value for key, value in values.items()})
    return RepoConfig(**fields)


# -- wording --------------------------------------------------------------------------------


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _shown_key(key: str) -> str:
    return key if len(key) <= 60 else key[:60] + "…"


def _kind_of(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    return f"the value {shown(node.value)}"

