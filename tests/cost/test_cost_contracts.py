"""The cost contracts: versioned, unique subjects; schemas snapshotted so breaks show in review.

After an intended change: ``CHATBUS_UPDATE_SNAPSHOTS=1 uv run pytest tests/cost -k contracts``.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

from chatbus.contracts import cost
from chatbus.contracts.base import Message

SNAPSHOT = Path(__file__).with_name("cost_contracts.schema.json")


def messages() -> dict[str, type[Message]]:
    return {
        name: obj
        for name, obj in vars(cost).items()
        if inspect.isclass(obj) and issubclass(obj, Message) and obj.__module__ == cost.__name__
    }


def test_subjects_are_versioned_and_unique() -> None:
    subjects = [m.subject for m in messages().values() if m.subject]
    assert sorted(subjects) == [
        "cost.authorize.v1",
        "cost.budgets.loaded.v1",
        "cost.budgets.v1",
        "cost.count.v1",
        "cost.report.v1",
        "cost.usage.batch.v1",
        "cost.usage.recorded.v1",
    ]


def test_schemas_match_the_snapshot() -> None:
    current = {name: m.model_json_schema() for name, m in sorted(messages().items())}
    if os.environ.get("CHATBUS_UPDATE_SNAPSHOTS") or not SNAPSHOT.exists():
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    assert json.loads(SNAPSHOT.read_text()) == current


def test_readers_ignore_unknown_fields() -> None:
    ev = cost.UsageRecorded.model_validate_json(
        '{"event_id": "e", "request_id": "r", "agent": "a", "model": "m", "prompt_tokens": 1,'
        ' "completion_tokens": 2, "ts": 1.5, "added_in_v1_7": true}'
    )
    assert ev.prompt_tokens == 1
