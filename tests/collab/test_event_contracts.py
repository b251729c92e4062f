"""Domain event subjects: versioned, unique, inside the stream, clear of every other subject."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from chatbus.contracts.chat import AgentPing, ChatRequest
from chatbus.contracts.events import ALL_EVENTS, DOMAIN_EVENT_SUBJECTS, LeadQualified
from chatbus.contracts.memory import ALL_SUBJECTS as MEMORY_SUBJECTS


def test_every_event_subject_is_versioned_unique_and_held_by_the_stream() -> None:
    subjects = [e.subject for e in ALL_EVENTS]
    assert len(set(subjects)) == len(subjects)
    prefixes = [p.removesuffix(">") for p in DOMAIN_EVENT_SUBJECTS]
    for subject in subjects:
        version = subject.rsplit(".", 1)[-1]
        assert version == "v1" and any(subject.startswith(p) for p in prefixes), subject
    others = [ChatRequest.subject_for("support"), AgentPing.subject, *MEMORY_SUBJECTS,
              "cost.usage.recorded.v1", "dlq.sales.lead.qualified.v1"]  # fmt: skip
    assert not [s for s in others if any(s.startswith(p) for p in prefixes)]


def test_a_malformed_event_is_refused_and_unknown_fields_are_ignored() -> None:
    with pytest.raises(ValidationError):
        LeadQualified(source="sales", lead_id="L-1", company="", plan="team", seats=0, score=5)
    event = LeadQualified.model_validate_json(
        b'{"source": "sales", "lead_id": "L-1", "company": "A", "plan": "team", "seats": 3,'
        b' "score": 60, "added_in_v1_1": true}'
    )
    assert event.event_id and event.ts > 0 and event.tenant_id == "default"
