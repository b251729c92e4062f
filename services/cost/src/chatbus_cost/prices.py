"""What tokens cost: USD per 1M input and output tokens, by model.

Defaults cover common OpenAI models (list prices, standard tier). A price file (JSON or YAML,
``{"gpt-4o": {"input": 2.5, "output": 10}, ...}``) overrides or adds models. A dated model name
(``gpt-4o-mini-2024-07-18``) takes the price of the longest known prefix. A model with no price
is charged :data:`UNKNOWN_MODEL` (gpt-4o's price, so budgets err on the safe side) and flagged.

Money is kept as integer nano-dollars (1e-9 USD) so sums and budgets are exact.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("chatbus_cost.prices")

NANO = 1_000_000_000  # nano-dollars per dollar


@dataclass(frozen=True)
class Price:
    input: float  # USD per 1M prompt tokens
    output: float  # USD per 1M completion tokens


DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4-turbo": Price(10.00, 30.00),
    "gpt-4": Price(30.00, 60.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "gpt-5": Price(1.25, 10.00),
    "gpt-5-mini": Price(0.25, 2.00),
    "gpt-5-nano": Price(0.05, 0.40),
    "o1": Price(15.00, 60.00),
    "o1-mini": Price(1.10, 4.40),
    "o3": Price(2.00, 8.00),
    "o3-mini": Price(1.10, 4.40),
    "o4-mini": Price(1.10, 4.40),
    "text-embedding-3-small": Price(0.02, 0.0),
    "text-embedding-3-large": Price(0.13, 0.0),
}
UNKNOWN_MODEL = Price(2.50, 10.00)
MAX_PRICE = 10_000.0  # USD per 1M tokens; anything above is a typo


class PriceError(ValueError):
    """The price file is unreadable or holds an impossible price."""


def cost_nusd(price: Price, prompt_tokens: int, completion_tokens: int) -> int:
    """Cost of one call in nano-dollars (rounded to the nearest)."""
    # tokens * USD/1M = tokens * USD * 1e-6 = tokens * price * 1000 nano-dollars
    return round(prompt_tokens * price.input * 1000 + completion_tokens * price.output * 1000)


def usd(nusd: int | float) -> float:
    return round(nusd / NANO, 9)


class PriceTable:
    """Looks up the price of a model; see the module docstring for the rules."""

    def __init__(self, prices: dict[str, Price] | None = None) -> None:
        self.prices = dict(DEFAULT_PRICES if prices is None else prices)
        self._warned: set[str] = set()

    def lookup(self, model: str) -> tuple[Price, bool]:
        """``(price, known)``; unknown models get :data:`UNKNOWN_MODEL` and ``known=False``."""
        if model in self.prices:
            return self.prices[model], True
        best = max((m for m in self.prices if model.startswith(m + "-")), key=len, default=None)
        if best is not None:
            return self.prices[best], True
        if model not in self._warned:
            self._warned.add(model)
            log.warning("no price for model %r: charging the default %s", model, UNKNOWN_MODEL)
        return UNKNOWN_MODEL, False

    def cost_nusd(self, model: str, prompt_tokens: int, completion_tokens: int) -> int:
        return cost_nusd(self.lookup(model)[0], prompt_tokens, completion_tokens)

    @classmethod
    def load(cls, path: Path | None) -> PriceTable:
        """Defaults, overridden by the file at ``path`` when given."""
        prices = dict(DEFAULT_PRICES)
        if path is not None:
            prices.update(parse_prices(read_mapping(path, "price file")))
        return cls(prices)


def read_mapping(path: Path, what: str) -> Any:
    try:
        text = path.read_text()
    except OSError as e:
        raise PriceError(f"cannot read {what} {path}: {e.strerror or e}") from e
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise PriceError(f"{what} {path} is not valid JSON/YAML: {e}") from e


def parse_prices(raw: Any) -> dict[str, Price]:
    if not isinstance(raw, dict):
        raise PriceError("price file must map model names to {input, output}")
    out: dict[str, Price] = {}
    for model, entry in raw.items():
        if not isinstance(entry, dict) or not {"input", "output"} <= entry.keys():
            raise PriceError(f"price of {model!r} needs 'input' and 'output' (USD per 1M)")
        values = []
        for kind in ("input", "output"):
            v = entry[kind]
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise PriceError(f"{kind} price of {model!r} must be a number, got {v!r}")
            if not 0 <= v <= MAX_PRICE:
                raise PriceError(f"{kind} price of {model!r} must be 0..{MAX_PRICE:g}, got {v}")
            values.append(float(v))
        out[str(model)] = Price(values[0], values[1])
    return out
