"""Budget config: sane rules load, bad ones stop the service at start-up with a clear message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chatbus_cost.budgets import BudgetBook, BudgetError, Who


def test_rules_apply_to_the_right_requests(tmp_path: Path) -> None:
    f = tmp_path / "budgets.yaml"
    f.write_text(
        "budgets:\n"
        "  - {scope: global, period: monthly, unit: usd, soft: 400, hard: 500}\n"
        "  - {scope: user, period: daily, unit: usd, soft: 0.5, hard: 1}\n"
        "  - {scope: agent, id: sales, period: daily, unit: tokens, hard: 2000000}\n"
        "  - {scope: tenant, tenant: acme, period: daily, hard: 20}\n"
    )
    book = BudgetBook.load(f, None)
    support = book.applicable(Who("default", "support", "u1"))
    assert [(r.scope, r.period) for r in support] == [("global", "monthly"), ("user", "daily")]
    sales_anon = book.applicable(Who("acme", "sales", None))
    assert [r.scope for r in sales_anon] == ["global", "agent", "tenant"]


def test_which_tenants_and_agents_no_rule_can_limit() -> None:
    """Calls no rule can ever limit may skip the ask (``unbudgeted_s``); any other may not."""
    rule = {"period": "daily", "hard": 5}
    book = BudgetBook.parse(
        [
            {**rule, "scope": "agent", "id": "sales"},
            {**rule, "scope": "tenant", "id": "acme"},
            {**rule, "scope": "user", "id": "u7", "tenant": "beta"},
        ]
    )
    assert book.may_apply("acme", "support")  # the tenant's own budget
    assert book.may_apply("default", "sales")  # the agent's
    assert book.may_apply("beta", "support")  # one user of beta: any user of beta may be it
    assert not book.may_apply("default", "support")
    assert not BudgetBook.parse([]).may_apply("default", "support")
    assert BudgetBook.parse([{**rule, "scope": "global"}]).may_apply("x", "y")
    assert BudgetBook.parse([{**rule, "scope": "agent"}]).may_apply("x", "y")  # each agent


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"scope": "user", "period": "daily", "hard": -5}, "hard limit must be > 0, got -5"),
        ({"scope": "user", "period": "daily", "hard": 0}, "hard limit must be > 0"),
        ({"scope": "global", "period": "monthly", "hard": 5e9}, "is absurd"),
        ({"scope": "agent", "period": "daily", "soft": 10, "hard": 5}, "soft limit 10 is above"),
        ({"scope": "agent", "period": "daily", "soft": -1, "hard": 5}, "soft limit must be >= 0"),
        ({"scope": "planet", "period": "daily", "hard": 5}, "scope"),
        ({"scope": "user", "period": "hourly", "hard": 5}, "period"),
    ],
)
def test_bad_rules_are_refused_with_the_reason(rule: dict[str, object], message: str) -> None:
    with pytest.raises(BudgetError, match="budget rule #2") as err:
        BudgetBook.load(None, json.dumps([{"scope": "global", "period": "daily", "hard": 1}, rule]))
    assert message in str(err.value)


def test_service_refuses_to_start_on_a_negative_budget(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(
        BUDGETS_JSON=json.dumps([{"scope": "user", "period": "daily", "unit": "usd", "hard": -1}]),
        NATS_URL="nats://127.0.0.1:1",  # never reached: the config is refused first
        PORT="0",
    )
    done = subprocess.run(
        [sys.executable, "-m", "chatbus_cost"],
        env=env,
        capture_output=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    err = done.stderr.decode()
    assert "cost: refusing to start: budget rule #1" in err
    assert "hard limit must be > 0, got -1" in err
