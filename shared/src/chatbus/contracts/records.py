"""Records: the business records agents' tools create (tickets, leads, invoices, orders, ...).

The agent runtime owns them (its Redis keys ``chatbus:{tenant}:record:*`` and
``chatbus:{tenant}:records:*``); nobody else reads those keys. Anyone who wants a record asks
the agent services by request/reply: every agent instance listens in the queue group
:data:`RECORDS_QUEUE`, so exactly one answers. A missing record, or one outside the asked
tenant/user/session, is the error reply ``not_found`` (the two are indistinguishable).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from chatbus.contracts.base import Message

RECORDS_QUEUE = "agent-records"
"""The queue group in which agent services answer records requests."""

KIND = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$", description="ticket, lead, invoice, order, ...")
_ID = Field(min_length=1, max_length=200)
_OPTIONAL_ID = Field(default=None, min_length=1, max_length=200)
MAX_PAGE = 200


class QueryRecords(Message):
    """List a tenant's records of one kind, newest first, optionally one user's or session's.

    ``cursor`` is the ``next_cursor`` of the previous page (opaque); a page with
    ``next_cursor=None`` is the last one.
    """

    subject: ClassVar[str] = "records.query.v1"

    tenant_id: str = _ID
    kind: str = KIND
    user_id: str | None = _OPTIONAL_ID
    session_id: str | None = _OPTIONAL_ID
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(default=None, min_length=1, max_length=200)


class RecordPage(Message):
    records: list[dict[str, Any]] = Field(default_factory=list)
    next_cursor: str | None = None


class GetRecord(Message):
    """One record by id; with ``user_id`` (or ``session_id``) only if it belongs to them."""

    subject: ClassVar[str] = "records.get.v1"

    tenant_id: str = _ID
    kind: str = KIND
    record_id: str = _ID
    user_id: str | None = _OPTIONAL_ID
    session_id: str | None = _OPTIONAL_ID


class RecordFound(Message):
    record: dict[str, Any]


ALL_SUBJECTS = (QueryRecords.subject, GetRecord.subject)
