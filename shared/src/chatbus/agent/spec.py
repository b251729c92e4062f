"""What makes an agent itself. An agent service is one :class:`AgentSpec` and ``run_agent``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class AgentSpec:
    """Identity, prompt and model defaults of one agent.

    Model and temperature here are defaults; the service's ``MODEL`` / ``TEMPERATURE``
    settings override them per deployment.
    """

    id: str
    label: str
    description: str
    system_prompt: str
    model: str = "gpt-4o-mini"
    temperature: float = 0.3
    # Used past the soft budget limit, and when the main model keeps failing.
    cheap_model: str | None = None
    fallback_model: str | None = None
    # "session": recall from this session only; "user": from all of the user's sessions.
    memory_scope: Literal["session", "user"] = "session"
    # Tools (chatbus.agent.tools.Tool) and agents this one may hand a conversation to.
    tools: tuple[Any, ...] = field(default_factory=tuple)
    handoffs: tuple[str, ...] = field(default_factory=tuple)
    # Domain events this agent subscribes to: subject -> async handler(event, ctx).
    subscriptions: tuple[Any, ...] = field(default_factory=tuple)
    # Demo records (chatbus.agent.records.DemoRecord), seeded only where DEMO_DATA asks.
    demo_records: tuple[Any, ...] = field(default_factory=tuple)
    budget_reply: str = (
        "I'm sorry — this assistant has reached its usage budget for now. "
        "Please try again later or contact support."
    )

    def __post_init__(self) -> None:
        # Tools that draft bring the runtime's confirm_draft with them.
        from chatbus.agent.tools import with_runtime_tools

        object.__setattr__(self, "tools", with_runtime_tools(self.tools))
