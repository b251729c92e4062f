"""Cost arithmetic against hand-computed values; price files."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbus_cost.prices import NANO, UNKNOWN_MODEL, Price, PriceError, PriceTable, usd


def test_gpt_4o_mini_by_hand() -> None:
    # 1,000 prompt x $0.15/1M = $0.00015; 500 completion x $0.60/1M = $0.0003
    assert PriceTable().cost_nusd("gpt-4o-mini", 1000, 500) == 450_000
    assert usd(450_000) == 0.00045


def test_gpt_4o_by_hand() -> None:
    # 1,234 x $2.50/1M = $0.003085; 567 x $10/1M = $0.00567; total $0.008755
    assert usd(PriceTable().cost_nusd("gpt-4o", 1234, 567)) == 0.008755


def test_a_million_tokens_costs_the_list_price() -> None:
    table = PriceTable()
    assert table.cost_nusd("gpt-4.1", 1_000_000, 0) == 2 * NANO
    assert table.cost_nusd("gpt-4.1", 0, 1_000_000) == 8 * NANO


def test_dated_model_takes_the_longest_prefix() -> None:
    table = PriceTable()
    assert table.lookup("gpt-4o-mini-2024-07-18") == (Price(0.15, 0.60), True)
    assert table.lookup("gpt-4o-2024-08-06") == (Price(2.50, 10.00), True)


def test_unknown_model_is_charged_the_default_and_flagged() -> None:
    price, known = PriceTable().lookup("my-local-llama")
    assert (price, known) == (UNKNOWN_MODEL, False)


def test_price_file_overrides_and_adds(tmp_path: Path) -> None:
    f = tmp_path / "prices.yaml"
    f.write_text("gpt-4o-mini: {input: 0.1, output: 0.2}\nmy-llama: {input: 0, output: 0}\n")
    table = PriceTable.load(f)
    assert table.cost_nusd("gpt-4o-mini", 1_000_000, 1_000_000) == round(0.3 * NANO)
    assert table.lookup("my-llama") == (Price(0.0, 0.0), True)
    assert table.lookup("gpt-4o")[0] == Price(2.50, 10.00)  # defaults stay


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"gpt-4o": {"input": -1, "output": 2}}', "input price of 'gpt-4o' must be 0.."),
        ('{"gpt-4o": {"input": 1}}', "needs 'input' and 'output'"),
        ('{"gpt-4o": {"input": "cheap", "output": 1}}', "must be a number"),
        ("[1, 2]", "must map model names"),
        ("{not json", "not valid JSON/YAML"),
    ],
)
def test_bad_price_file_is_refused_clearly(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "prices.json"
    f.write_text(text)
    with pytest.raises(PriceError, match=message.replace("(", r"\(")):
        PriceTable.load(f)
