"""The README's ./dev commands work in a new shell where uv is not on the PATH."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import Stack

ROOT = Path(__file__).resolve().parents[2]


NEW_SHELL_PATH = "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
pytestmark = pytest.mark.skipif(
    shutil.which("uv", path=NEW_SHELL_PATH) is not None,
    reason="uv is installed system-wide here: a shell without uv cannot be had",
)


def new_shell_env(stack: Stack) -> dict[str, str]:
    """A fresh login's PATH (no ~/.local/bin, no venv), pointed at the test stack."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    }
    env["PATH"] = NEW_SHELL_PATH
    env["CHATBUS_URL"] = stack.url
    env["NATS_URL"] = stack.factory.nats_url
    return env


async def dev(stack: Stack, *args: str, stdin: str = "") -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(ROOT / "dev"),
        *args,
        cwd="/",  # any directory: ./dev finds the project itself
        env=new_shell_env(stack),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(stdin.encode()), 120)
    return proc.returncode or 0, out.decode()


async def test_dev_agents_lists_the_running_agents(stack: Stack) -> None:
    code, out = await dev(stack, "agents")
    assert code == 0, out
    assert "support" in out and "sales" in out and "instance" in out


async def test_dev_chat_answers_through_the_gateway(stack: Stack) -> None:
    code, out = await dev(stack, "chat", "support", stdin="Hello!\n")
    assert code == 0, out
    assert "support> [offline model]" in out


async def test_dev_usage_prints_the_daily_table(stack: Stack) -> None:
    await stack.chat("support", "Hello, usage!", "dev-usage")
    code, out = await dev(stack, "usage", "--days", "2")
    assert code == 0, out
    assert "cost (USD)" in out and "forecast for" in out


async def test_dev_keys_and_run_find_uv_themselves(stack: Stack) -> None:
    code, out = await dev(stack, "keys", "--help")
    assert code == 0 and "create" in out, out
    code, out = await dev(stack, "run", "python", "-c", "import chatbus; print('in the venv')")
    assert code == 0 and "in the venv" in out, out
