"""Bodies of the routes that ask the memory, cost and records owners, and of forgetting.

Requests are validated with these models; answers are built to them. Both are the schemas of
``/openapi.json``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints, field_validator

from chatbus.contracts.memory import MAX_FACT_CHARS, MAX_PROFILE_FACTS, PROFILE_KEY
from chatbus_gateway.api.params import BodyId
from chatbus_gateway.api.route_table import ID

# -- memory -------------------------------------------------------------------------------

# Turns per import request: a few seconds of embedding at most (send longer transcripts in parts).
MAX_IMPORT_TURNS = 500
# Unix time of 9999-12-31T23:59:59Z: later times are no calendar date (and overflow one).
MAX_UNIX_TIME = 253_402_300_799


class ImportedTurn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["user", "assistant", "system"]
    content: str = Field(min_length=1, pattern=r"\S")
    speaker: str | None = Field(default=None, max_length=200)
    created_at: float | None = Field(
        default=None, ge=0, le=MAX_UNIX_TIME, strict=True, allow_inf_nan=False
    )
    agent: str | None = Field(default=None, max_length=200)

    @field_validator("content")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("content must not be empty")
        return v


class ImportBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    messages: list[ImportedTurn] = Field(min_length=1, max_length=MAX_IMPORT_TURNS)
    user_id: BodyId | None = None


class SearchBody(BaseModel):
    """A session's memory (``session_id``), or a user's across sessions (``user_id`` and
    ``scope: user``)."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "anyOf": [
                {"required": ["session_id"], "properties": {"session_id": ID}},
                {
                    "required": ["user_id", "scope"],
                    "properties": {"user_id": ID, "scope": {"const": "user"}},
                },
            ]
        },
    )

    session_id: BodyId | None = None
    query: str = Field(min_length=1, max_length=10_000, pattern=r"\S")
    limit: int = Field(default=5, ge=1, le=100)
    user_id: BodyId | None = None
    scope: Literal["session", "user"] = "session"
    threshold: float | None = Field(default=None, ge=-1, le=1)

    @field_validator("query")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query must not be empty")
        return v


class TurnOut(BaseModel):
    role: Literal["user", "assistant", "system", "summary"]
    content: str
    created_at: float = 0.0
    agent: str | None = None
    speaker: str | None = None


class HistoryOut(BaseModel):
    session_id: str
    messages: list[TurnOut] = Field(description="Oldest first")


class ImportedOut(BaseModel):
    session_id: str
    imported: int
    chunks: int


class HitOut(TurnOut):
    score: float
    similarity: float
    session_id: str
    turn_id: str


class SearchOut(BaseModel):
    results: list[HitOut] = Field(description="Best first")


# -- profiles -----------------------------------------------------------------------------

FactName = Annotated[str, StringConstraints(pattern=PROFILE_KEY)]
FactValue = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_FACT_CHARS, pattern=r"\S")
]


class ProfilePatch(
    RootModel[
        Annotated[
            dict[FactName, FactValue | None],
            Field(min_length=1, max_length=MAX_PROFILE_FACTS),
        ]
    ]
):
    """Facts to merge into a profile: a string sets the fact, ``null`` removes it."""

    model_config = ConfigDict(
        json_schema_extra={
            "additionalProperties": False,
            "example": {"city": "Lisbon", "plan": "enterprise", "language": None},
        }
    )


class FactOut(BaseModel):
    value: str
    updated_at: float
    source: str
    session_id: str | None = None


class ChangeOut(BaseModel):
    key: str
    value: str
    since: float
    until: float
    replaced_by: str | None = None
    source: str


class ProfileOut(BaseModel):
    user_id: str
    profile: dict[str, str] = Field(description="The current value of each fact")
    facts: dict[str, FactOut]
    history: list[ChangeOut] = Field(description="Replaced or removed facts, oldest first")
    updated_at: float | None


# -- forgetting ---------------------------------------------------------------------------


class ForgetOut(BaseModel):
    forget_id: str
    status: Literal["pending", "done"]
    session_id: str | None = None
    user_id: str | None = None
    confirmed: list[str] = Field(description="Owners that forgot")
    pending: list[str] = Field(description="Owners that did not confirm yet")
    deleted: int
    sessions: list[str]
    status_url: str


# -- usage, budgets, traffic --------------------------------------------------------------


class UsageRowOut(BaseModel):
    key: str
    prompt_tokens: int
    completion_tokens: int
    tokens: int
    cost_usd: float
    requests: int
    cache_hits: int


class UsageReportOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    tenant: str = Field(description="The tenant, or * for every tenant")
    from_: str = Field(alias="from")
    to: str
    group_by: str
    rows: list[UsageRowOut]
    total: UsageRowOut
    forecast_month_usd: float | None = None


class BudgetOut(BaseModel):
    label: str
    scope: str
    id: str | None = None
    tenant: str | None = None
    period: str
    unit: str
    soft: float | None = None
    hard: float
    used: float | None = None
    state: Literal["ok", "soft", "hard", "per_subject"]


class BudgetsOut(BaseModel):
    budgets: list[BudgetOut]


class MinuteOut(BaseModel):
    minute: str
    requests: int
    errors: int
    refused: int


class AgentTrafficOut(BaseModel):
    agent: str
    requests: int
    errors: int
    refused: int
    p50_ms: float | None
    p95_ms: float | None


class StatsOut(BaseModel):
    tenant: str
    window_minutes: int
    per_minute: list[MinuteOut]
    agents: list[AgentTrafficOut]


# -- records ------------------------------------------------------------------------------


class RecordOut(RootModel[dict[str, Any]]):
    """A record as the agent's tool wrote it (its fields depend on the kind)."""
