"""Every command the README, infra/README.md and the runner's banner print is one ./dev knows.

A new user copies them into a new shell: nothing may assume uv (or the venv) on the PATH, and
each ``./dev`` command must exist and accept the arguments shown.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from chatbus_dev.cli import build_parser
from chatbus_dev.local import ready_commands
from chatbus_dev.usage_cli import parser as usage_parser
from chatbus_gateway.keys_cli import parser as keys_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "infra" / "README.md"]


def dev_commands() -> set[str]:
    """The subcommands the ./dev script's ``case`` accepts."""
    labels = re.findall(r"^  ([a-z|-]+)\)$", (ROOT / "dev").read_text(), flags=re.M)
    return {name for label in labels for name in label.split("|")}


def printed_commands() -> list[str]:
    """Shell commands in the docs' code blocks and inline code, and in the banner."""
    found: list[str] = []
    for doc in DOCS:
        text = doc.read_text()
        for block in re.findall(r"```(?:bash|sh|console|shell)\n(.*?)```", text, flags=re.S):
            found += block.replace("\\\n", " ").splitlines()
        found += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    found += ready_commands(8080) + ready_commands(9180)
    out = []
    for line in found:
        for part in re.split(r"&&|;|\|", line.split(" #", 1)[0]):
            if part.strip():
                out.append(part.strip())
    return out


def dev_invocations() -> list[list[str]]:
    calls = []
    for command in printed_commands():
        try:
            words = shlex.split(command)
        except ValueError:
            continue
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value ./dev ...
            words = words[1:]
        if words and Path(words[0]).name == "dev" and words[0].startswith((".", "/")):
            if words[1:]:  # a bare `./dev` names the tool (and prints its usage)
                calls.append(words[1:])
    return calls


def test_a_stack_on_another_port_prints_commands_that_reach_its_gateway() -> None:
    printed = ready_commands(9180)
    assert not [c for c in printed if "8080" in c]
    to_gateway = [c for c in printed if re.search(r"\./dev (chat|agents)\b", c)]
    assert to_gateway
    assert all(c.startswith("CHATBUS_URL=http://127.0.0.1:9180 ./dev ") for c in to_gateway)
    assert all("CHATBUS_URL" not in c for c in ready_commands(8080))


def test_no_printed_command_needs_uv_or_the_venv_on_the_path() -> None:
    bare = [c for c in printed_commands() if re.match(r"(uv run|uvx|chatbus) ", c)]
    assert not bare, f"these fail in a new shell (use ./dev ...): {bare}"


def test_the_docs_and_the_banner_show_the_everyday_commands() -> None:
    shown = {call[0] for call in dev_invocations() if call}
    assert {"up", "test", "chat", "agents", "usage", "keys"} <= shown


@pytest.mark.parametrize("call", dev_invocations(), ids=" ".join)
def test_every_printed_dev_command_exists_and_takes_its_arguments(call: list[str]) -> None:
    command, args = call[0], call[1:]
    assert command in dev_commands(), f"./dev has no command {command!r}"
    args = [a for a in args if not re.fullmatch(r"<[^>]+>", a)] + (
        ["key-id"] if "<id>" in call else []
    )
    if command in ("up", "chat", "agents"):
        build_parser().parse_args([command, *args])
    elif command == "usage":
        usage_parser().parse_args(args)
    elif command == "keys":
        keys_parser().parse_args(args)
