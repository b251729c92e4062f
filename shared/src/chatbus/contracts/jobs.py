"""Gateway jobs: a chat message queued on JetStream (``?mode=async``), answered by a worker."""

from __future__ import annotations

from typing import ClassVar

from chatbus.contracts.base import Message
from chatbus.contracts.chat import ChatRequest


class ChatJob(Message):
    """Answer ``request`` later. Published to ``subject_for(agent)`` on the jobs stream."""

    subject: ClassVar[str] = "gateway.jobs.v1"

    job_id: str
    request: ChatRequest
    callback_url: str | None = None
    created_at: float = 0.0

    @staticmethod
    def subject_for(agent: str, prefix: str = "gateway.jobs.v1") -> str:
        return f"{prefix}.{agent}"


class JobCallback(Message):
    """POST job ``job_id``'s record to ``url``: queued on JetStream, retried until delivered."""

    subject: ClassVar[str] = "gateway.callbacks.v1"

    job_id: str
    url: str
