"""Where a changeset's symlinks lead once it is checked out, following links through links.

Resolution is physical, as the kernel does it: ``..`` after a link climbs from where the link
leads, not from where it sits, so ``up -> ../..`` followed by ``esc -> a/b/up/../x`` leaves the
tree although neither target does so on its face. Only the changeset's own symlinks are known
(Porter does not fetch the base tree), so every other path component counts as a directory.
Names are compared through ``fold``: a checkout on macOS or Windows ignores case, so the caller
resolves once as Linux would and once as those would.

Each link is resolved once and remembered: where a link leads does not depend on how it was
reached, because no changeset path goes through another changeset link (the parser refuses a
path below anything it writes). That keeps the work linear in the size of the targets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["MAX_HOPS", "LinkError", "resolve_links"]

MAX_HOPS = 40  # Linux's MAXSYMLINKS: a longer chain does not resolve on a checkout anyway


class LinkError(Exception):
    """The symlink at ``path`` cannot be followed safely; ``reason`` is a sentence's tail."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason


@dataclass(eq=False)
class _Node:
    """A directory that holds changeset links, or a link (``target`` set)."""

    path: str
    parent: _Node | None
    top: str | None  # the first component of ``path``; None for the root
    children: dict[str, _Node] = field(default_factory=dict)
    target: str | None = None
    busy: bool = False
    leads_to: _Where | None = None


@dataclass(frozen=True)
class _Where:
    """A place in the tree: ``depth`` unknown directories below ``node``; ``first`` names the
    first of them (it matters only below the root, where it is the top-level name)."""

    node: _Node
    depth: int = 0
    first: str | None = None

    @property
    def top(self) -> str | None:
        if self.node.parent is not None:
            return self.node.top
        return self.first if self.depth else None


def _same(name: str) -> str:
    return name


def resolve_links(
    links: Mapping[str, str], *, fold: Callable[[str], str] | None = None
) -> dict[str, str | None]:
    """For each link path, the top-level name of where it finally leads (None: the root).

    Raises :class:`LinkError` for a link that leads above the root, into a loop, or through
    more than :data:`MAX_HOPS` links, and for two links that folding makes one file (or one
    the other's directory). As given, no link may lie below another: the caller refuses that.
    """
    fold = fold or _same
    root = _Node(path="", parent=None, top=None)
    nodes = []
    for path, target in links.items():
        node = root
        names = path.split("/")
        for index, name in enumerate(names):
            child = node.children.get(fold(name))
            if child is None:
                child = _Node(path=f"{node.path}/{name}" if node.path else name,
                              parent=node, top=node.top or name)
                node.children[fold(name)] = child
            elif child.target is not None or index == len(names) - 1:
                raise LinkError(path, "is one file with another symlink, or lies below one, "
                                      "where case is ignored (macOS, Windows)")
            node = child
        node.target = target
        nodes.append(node)
    return {node.path: _resolve(node, 1, fold).top for node in nodes}


def _resolve(link: _Node, hops: int, fold: Callable[[str], str]) -> _Where:
    if link.leads_to is not None:
        return link.leads_to
    if link.busy:
        raise LinkError(link.path, "is part of a loop of symlinks")
    if hops > MAX_HOPS:
        raise LinkError(link.path, f"goes through too many symlinks (more than {MAX_HOPS})")
    assert link.parent is not None and link.target is not None
    link.busy = True
    # The fields of a _Where, kept in locals: this loop runs once per target component.
    node, depth, first = link.parent, 0, None
    for name in link.target.split("/"):
        if name in {"", "."}:
            continue
        if name == "..":
            if depth:
                depth -= 1
            elif node.parent is None:
                raise LinkError(link.path, "points outside the repository")
            else:
                node = node.parent
        elif depth or fold(name) not in node.children:
            first = first if depth else name
            depth += 1
        else:
            child = node.children[fold(name)]
            if child.target is None:
                node = child
            else:
                where = _resolve(child, hops + 1, fold)
                node, depth, first = where.node, where.depth, where.first
    link.busy = False
    link.leads_to = _Where(node, depth, first)
    return link.leads_to
