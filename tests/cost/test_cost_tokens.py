"""Token counts equal tiktoken's, offline; chat overhead counted the way OpenAI bills it."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tiktoken

from chatbus.tokens import TokenCounter

# From OpenAI's cookbook "How to count tokens with tiktoken": the API billed 129 prompt tokens
# for these messages on gpt-3.5-turbo/gpt-4 and 124 on gpt-4o / gpt-4o-mini.
COOKBOOK = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]

STRINGS = [
    "hello world",
    "",
    "Bonjour, je voudrais annuler ma commande n°4521 s'il vous plaît.",
    "def f(x):\n    return x ** 2  # 🐍",
    "日本語のテキストも数えます。",
    "<|endoftext|> is plain text when a user types it",
]


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


def test_hello_world_ids_match_the_published_ones(counter: TokenCounter) -> None:
    assert counter.encode("hello world", "gpt-4") == [15339, 1917]
    assert counter.encode("hello world", "gpt-4o-mini") == [24912, 2375]


@pytest.mark.parametrize(
    ("model", "encoding"), [("gpt-4", "cl100k_base"), ("gpt-4o", "o200k_base")]
)
@pytest.mark.parametrize("text", STRINGS)
def test_counts_equal_tiktoken(counter: TokenCounter, model: str, encoding: str, text: str) -> None:
    expected = len(tiktoken.get_encoding(encoding).encode(text, disallowed_special=()))
    assert counter.count_text(text, model) == expected


@pytest.mark.parametrize(
    ("model", "billed"),
    [("gpt-3.5-turbo", 129), ("gpt-4-0613", 129), ("gpt-4o", 124), ("gpt-4o-mini", 124)],
)
def test_chat_overhead_matches_what_openai_bills(
    counter: TokenCounter, model: str, billed: int
) -> None:
    assert counter.count_messages(COOKBOOK, model) == billed


def test_encoding_follows_the_model(counter: TokenCounter) -> None:
    assert counter.encoding_for("gpt-4o-mini-2024-07-18") == (
        tiktoken.get_encoding("o200k_base"),
        True,
    )
    assert counter.encoding_for("gpt-3.5-turbo")[0].name == "cl100k_base"


def test_unknown_model_uses_the_default_encoding_and_is_flagged(
    counter: TokenCounter, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="chatbus.tokens"):
        enc, known = counter.encoding_for("llama-3-70b-made-up")
        n = counter.count_text("hello world", "llama-3-70b-made-up")
    assert (enc.name, known) == ("o200k_base", False)
    assert n == 2
    assert "unknown model 'llama-3-70b-made-up'" in caplog.text


def test_tool_calls_and_content_parts_are_counted(counter: TokenCounter) -> None:
    enc = tiktoken.get_encoding("o200k_base")
    parts = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}],
        }
    ]
    assert counter.count_messages(parts, "gpt-4o") == 3 + 3 + len(enc.encode("user")) + len(
        enc.encode("hi there")
    )
    call = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]}
    assert counter.count_messages([call], "gpt-4o") > counter.count_messages(
        [{"role": "assistant", "content": None}], "gpt-4o"
    )


def test_encodings_are_unpacked_lazily_into_the_cache_dir(tmp_path: Path) -> None:
    script = (
        "import os, pathlib, chatbus.tokens as t\n"
        "d = pathlib.Path(os.environ['TIKTOKEN_CACHE_DIR'])\n"
        "assert not d.exists() or not any(d.iterdir()), 'unpacked at import'\n"
        "print(t.TokenCounter().encode('hello world', 'gpt-4'))\n"
        "print(sorted(p.name for p in d.iterdir()))\n"
    )
    cache = tmp_path / "tiktoken"
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    ids, files = out.stdout.splitlines()
    assert ids == "[15339, 1917]"
    url = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
    names = sorted(
        hashlib.sha1(url.format(n).encode()).hexdigest() for n in ("cl100k_base", "o200k_base")
    )
    assert files == str(names)
