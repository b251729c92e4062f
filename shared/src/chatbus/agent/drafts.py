"""Money-moving tools: per-tenant limits, drafts, and the customer's own confirmation.

A tool that moves money never acts on the model's word alone. It calls :meth:`Drafts.propose`
(through ``ctx.propose``), which

1. refuses an amount above the tenant's limit or a currency the tenant does not allow
   (:class:`MoneyPolicy`; ``MONEY_MAX_AMOUNT``, ``MONEY_CURRENCIES``, ``TENANT_POLICIES_JSON``);
2. refuses when the conversation has no signed-in customer (``user_id``): the recipient is
   always the caller, never someone the model names;
3. stores the record as a ``draft`` and a one-time confirmation code for it (hashed, with a
   TTL), and tells the model to show the code to the customer.

Nothing is issued until a *later* turn whose *user message* contains the code: only then does
the runtime's :data:`confirm_draft` tool run the drafting tool's ``on_confirm`` (for an
invoice: mark it issued, announce it). The model cannot confirm alone: it can call
``confirm_draft`` any time, but the code must be in the customer's own words of this turn.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, field_validator

from chatbus.agent.keyspace import REDIS_PREFIX
from chatbus.agent.records import Caller
from chatbus.redis_link import RedisLink

if TYPE_CHECKING:
    from chatbus.agent.tools import ToolContext

log = logging.getLogger("chatbus.agent.drafts")

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L
CODE_LENGTH = 6


class MoneyPolicy(BaseModel):
    """What a money-moving tool may do for one tenant."""

    max_amount: float = Field(default=10_000.0, ge=0)
    currencies: tuple[str, ...] = ("USD", "EUR")
    confirm_ttl_s: float = Field(default=900.0, gt=0)

    @field_validator("currencies", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [c for c in v.split(",") if c.strip()]
        return tuple(str(c).strip().upper() for c in v)

    def check(self, amount: float, currency: str) -> None:
        """Raise :class:`PolicyRefused` when ``amount`` in ``currency`` is not allowed."""
        if currency not in self.currencies:
            raise PolicyRefused(
                f"currency {currency} is not accepted here (allowed: {', '.join(self.currencies)})"
            )
        if not 0 < amount <= self.max_amount:
            raise PolicyRefused(
                f"{amount:,.2f} {currency} is above the limit of {self.max_amount:,.2f} "
                f"{currency} per transaction for this account; a person has to handle it"
                if amount > 0
                else "the amount must be more than zero"
            )


class PolicyRefused(Exception):
    """A money-moving call breaks the tenant's policy; the message goes to the model."""


@dataclass
class TenantPolicies:
    """The default :class:`MoneyPolicy` and per-tenant overrides (partial: the rest default)."""

    default: MoneyPolicy = field(default_factory=MoneyPolicy)
    overrides: Mapping[str, MoneyPolicy] = field(default_factory=dict)

    @classmethod
    def parse(cls, default: MoneyPolicy, tenants_json: str | None) -> TenantPolicies:
        """``tenants_json``: ``{"acme": {"max_amount": 50000, "currencies": ["USD"]}}``."""
        raw = json.loads(tenants_json) if tenants_json else {}
        if not isinstance(raw, dict):
            raise ValueError("TENANT_POLICIES_JSON must be a JSON object keyed by tenant")
        base = default.model_dump()
        return cls(default, {t: MoneyPolicy(**{**base, **dict(p)}) for t, p in raw.items()})

    def of(self, tenant_id: str) -> MoneyPolicy:
        return self.overrides.get(tenant_id, self.default)


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()[:32]


def codes_in(message: str) -> set[str]:
    """The words of a user message that could be confirmation codes (case-insensitive)."""
    return {w for w in re.findall(r"[A-Z0-9]+", message.upper()) if len(w) == CODE_LENGTH}


class Drafts:
    """Drafts waiting for their customer's confirmation, in the agent runtime's Redis keys."""

    def __init__(self, redis: RedisLink, policies: TenantPolicies) -> None:
        self.redis, self.policies = redis, policies

    @staticmethod
    def key(caller: Caller, code: str) -> str:
        owner = f"user:{caller.user_id}" if caller.user_id else f"session:{caller.session_id}"
        return f"{REDIS_PREFIX}{caller.tenant_id}:draft:{owner}:{_hash(code)}"

    async def propose(
        self,
        ctx: ToolContext,
        kind: str,
        record_id: str,
        data: dict[str, Any],
        *,
        amount: float,
        currency: str,
    ) -> dict[str, Any]:
        """Store ``data`` as a draft for the caller and return what the model should say."""
        caller, tool = ctx.caller, ctx.tool
        if tool is None or tool.on_confirm is None:
            raise TypeError("propose() is for tools declared with @tool(on_confirm=...)")
        if not caller.user_id:
            raise PolicyRefused(
                "this needs a signed-in customer, and this conversation has none; "
                "ask the customer to sign in"
            )
        policy, currency = self.policies.of(caller.tenant_id), currency.strip().upper()
        policy.check(amount, currency)
        amount, ttl = round(amount, 2), max(1, int(policy.confirm_ttl_s))
        record = await ctx.store().create(
            kind,
            record_id,
            {**data, "amount": amount, "currency": currency, "status": "draft",
             "customer_id": caller.user_id, "confirm_by": time.time() + ttl},
        )  # fmt: skip
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        pending = {"kind": kind, "record_id": record_id, "tool": tool.name,
                   "request_id": ctx.req.request_id, "at": time.time()}  # fmt: skip
        await self.redis.call("SET", self.key(caller, code), json.dumps(pending), "EX", ttl)
        log.info(
            "draft proposed",
            extra={"fields": {"kind": kind, "record": record_id, "amount": amount,
                              "currency": currency}},
        )  # fmt: skip
        # Told by the runtime, not the model: what the customer's code would confirm.
        ctx.notices.append(
            f"[{kind.title()} {record_id}: {amount:,.2f} {currency}, billed to your account. "
            f"Nothing is charged until you reply with: confirm {code} "
            f"(valid {max(1, ttl // 60)} min.)]"
        )
        return {
            f"{kind}_id": record_id,
            "status": "draft",
            "amount": record["amount"],
            "currency": currency,
            "confirmation_code": code,
            "expires_in_s": ttl,
            "next_step": (
                f"Nothing is done yet. Tell the customer the exact amount ({amount:,.2f} "
                f"{currency}) and that they must reply with the code {code} to confirm it."
            ),
        }

    async def confirm(self, ctx: ToolContext, code: str) -> dict[str, Any]:
        """Carry out the draft ``code`` names, if the customer's own message confirms it."""
        code = code.strip().upper()
        if code not in codes_in(ctx.req.message):
            log.warning("confirmation refused: the code is not in the customer's message")
            raise PolicyRefused(
                "only the customer can confirm: their own message must contain the "
                "confirmation code. Ask them to reply with it; do not confirm for them."
            )
        key = self.key(ctx.caller, code)
        raw = await self.redis.call("GET", key)
        pending = json.loads(raw) if raw else None
        if pending is None:
            raise PolicyRefused(f"nothing waits for confirmation code {code} (or it expired)")
        if pending["request_id"] == ctx.req.request_id:
            raise PolicyRefused("a draft is confirmed in a later message, not the one making it")
        found = ctx.tools.get(pending["tool"]) if ctx.tools else None
        if found is None or found.on_confirm is None:
            raise PolicyRefused(f"this agent cannot complete a {pending['kind']}")
        if not await self.redis.call("DEL", key):  # one confirmation, even if two race
            raise PolicyRefused(f"confirmation code {code} was already used")
        records = ctx.store()
        draft = await records.get(pending["kind"], pending["record_id"])
        if draft is None or draft.get("status") != "draft":
            raise PolicyRefused(f"the {pending['kind']} is no longer waiting for confirmation")
        changes = await found.on_confirm(draft, ctx)
        changes = {**changes, "confirmed_at": time.time(), "confirmed_in": ctx.req.request_id}
        done = await records.update(pending["kind"], pending["record_id"], changes)
        log.info(
            "draft confirmed by the customer",
            extra={"fields": {"kind": pending["kind"], "record": pending["record_id"]}},
        )
        return done or {}


class ConfirmDraft(BaseModel):
    code: str = Field(
        min_length=CODE_LENGTH,
        max_length=CODE_LENGTH,
        pattern=r"^[A-Za-z0-9]+$",
        description="The confirmation code exactly as the customer wrote it",
    )
