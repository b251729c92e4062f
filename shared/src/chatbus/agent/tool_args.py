"""The runtime's checks of a tool call's arguments against the caller, before the tool acts.

The model is untrusted input, like the user: what it passes to a tool may have been planted
by a prompt injection. So, for every tool, the runtime (not each tool by hand):

* refuses any argument that names who the tool acts for (tenant, user, customer, session,
  recipient, e-mail, ...): those come from the request (:class:`~chatbus.agent.records.Caller`),
  and a tool's argument model may not even declare them;
* refuses arguments the tool does not declare (nothing slips through ``extra="ignore"``);
* resolves every argument marked ``Annotated[str, RecordRef("order")]`` to the caller's own
  record, and refuses the call when there is none: another user's or tenant's record looks
  exactly like a missing one.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, get_args, get_origin

from pydantic import BaseModel

if TYPE_CHECKING:
    from chatbus.agent.records import CallerRecords

log = logging.getLogger("chatbus.agent.tools")

IDENTITY_ARGUMENTS = frozenset(
    {
        "tenant", "tenant_id", "org", "org_id", "organization_id",
        "user", "user_id", "username", "customer", "customer_id", "account", "account_id",
        "owner", "owner_id", "session", "session_id", "caller", "on_behalf_of", "acting_as",
        "email", "billing_email", "customer_email", "recipient", "recipient_email", "bill_to",
    }
)  # fmt: skip
"""Argument names that would let the model choose whom a tool acts for."""


class ArgumentRefused(Exception):
    """The call's arguments may not be used for this caller; the message goes to the model."""


@dataclass(frozen=True)
class RecordRef:
    """Marks a tool argument as the id of one of the caller's records of ``kind``.

    ``order_id: Annotated[str, RecordRef("order")]`` — the runtime looks the order up for the
    caller before the tool runs and hands it over in ``ctx.refs["order_id"]``.
    """

    kind: str


@functools.cache  # per tool model, not per call (reading pydantic's fields is not free)
def _names(model: type[BaseModel]) -> dict[str, str]:
    """Every accepted argument name (field names and aliases) -> field name."""
    out = {}
    for name, f in model.model_fields.items():
        out[name] = name
        if f.alias:
            out[f.alias] = name
    return out


def check_declaration(tool: str, model: type[BaseModel]) -> None:
    """At definition: a tool may not take the identity it acts for as an argument."""
    named = sorted(n for n in _names(model) if n.lower() in IDENTITY_ARGUMENTS)
    if named:
        raise TypeError(
            f"tool {tool}: arguments {named} name whom the tool acts for; read the caller from "
            "ctx (ctx.caller, ctx.records) instead of letting the model choose"
        )


def _marks(annotation: Any) -> list[Any]:
    """Metadata of ``Annotated[...]`` anywhere in ``annotation`` (``Annotated[str, X] | None``)."""
    found = list(annotation.__metadata__) if get_origin(annotation) is Annotated else []
    return found + [m for arg in get_args(annotation) for m in _marks(arg)]


@functools.cache
def record_refs(model: type[BaseModel]) -> dict[str, str]:
    """``{argument: record kind}`` for the arguments marked with :class:`RecordRef`."""
    return {
        name: m.kind
        for name, f in model.model_fields.items()
        for m in [*f.metadata, *_marks(f.annotation)]
        if isinstance(m, RecordRef)
    }


def screen(tool: str, model: type[BaseModel], raw: Any) -> None:
    """Before validation: refuse identity arguments and arguments the tool does not take."""
    if not isinstance(raw, dict):
        raise ArgumentRefused(f"the arguments for {tool} must be a JSON object")
    accepted = _names(model)
    identity = sorted(k for k in raw if str(k).lower() in IDENTITY_ARGUMENTS)
    if identity:
        log.warning(
            "tool argument refused: identity chosen by the model",
            extra={"fields": {"tool": tool, "arguments": identity}},
        )
        raise ArgumentRefused(
            f"{tool} acts only for the customer in this conversation; it does not take "
            f"{', '.join(identity)}. Never pass whom a tool is for."
        )
    unknown = sorted(str(k) for k in raw if k not in accepted)
    if unknown:
        raise ArgumentRefused(
            f"{tool} does not take {', '.join(unknown)}; its arguments are "
            f"{', '.join(sorted(model.model_fields)) or 'none'}"
        )


async def resolve_refs(
    tool: str, model: type[BaseModel], args: BaseModel, records: CallerRecords | None
) -> dict[str, dict[str, Any]]:
    """The caller's records the arguments refer to; ArgumentRefused when one is not theirs."""
    refs = record_refs(model)
    out: dict[str, dict[str, Any]] = {}
    for name, kind in refs.items():
        value = getattr(args, name)
        if value is None:
            continue
        if records is None:
            raise ArgumentRefused("records are not available right now; try again later")
        found = await records.get(kind, str(value))
        if found is None:
            log.info(
                "tool argument refused: no such record for the caller",
                extra={"fields": {"tool": tool, "argument": name, "kind": kind}},
            )
            raise ArgumentRefused(
                f"there is no {kind} {str(value)[:80]!r} for this customer; "
                "ask them to check the number"
            )
        out[name] = found
    return out
