"""Issue 10, defect 11: the sales agent's invoice tool moves money — limits, drafts, consent.

The fake model plays a manipulated model: it asks for a $162,000,000 invoice, a currency the
tenant does not take, a recipient of its choosing, and it tries to confirm its own drafts. An
invoice is issued only when the customer's own later message carries the draft's code.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis.asyncio as aioredis

from chatbus.agent.records import RecordStore
from chatbus.bus import Bus
from chatbus.contracts.events import InvoiceCreated
from chatbus.offline_llm import OfflineLLM, Scripted
from tests.collab.collab_harness import agents, call, chat, pair, tool_messages

pytestmark = pytest.mark.timeout(90)


def results(llm: OfflineLLM, agent: str) -> list[str]:
    return tool_messages(llm.requests_for(agent)[-1].messages)


async def invoices(redis: aioredis.Redis, tenant: str) -> list[dict[str, Any]]:
    return await RecordStore(redis).list(tenant, "invoice")


async def test_over_limit_and_refused_currency_invoices_are_not_created(
    bus: Bus,
    redis: aioredis.Redis,
    nats_url: str,
    redis_url: str,
    fake_llm: tuple[OfflineLLM, str],
    uid: str,
) -> None:
    llm, url = fake_llm
    _, sales = pair(uid)
    tenant, strict = f"t{uid}", f"strict{uid}"
    policies = json.dumps({strict: {"max_amount": 100, "currencies": ["EUR"]}})
    async with agents([sales], nats_url, redis_url, url, tenant_policies_json=policies):
        llm.push(
            call("create_invoice", plan="enterprise", seats=100_000, months=36),  # $162,000,000
            call("create_invoice", plan="team", seats=10, currency="JPY"),
            Scripted(content="Sorry."),
        )
        await chat(bus, sales, "bill me", f"s{uid}", tenant_id=tenant, user_id="u1")
        huge, yen = results(llm, sales.id)
        assert huge.startswith("Error: 162,000,000.00 USD is above the limit of 10,000.00 USD")
        assert yen.startswith("Error: currency JPY is not accepted here (allowed: USD, EUR)")

        llm.push(  # this tenant's own policy: EUR only, at most 100
            call("create_invoice", plan="team", seats=10),
            call("create_invoice", plan="team", seats=10, currency="EUR"),
            Scripted(content="Sorry."),
        )
        await chat(bus, sales, "bill me", f"s{uid}", tenant_id=strict, user_id="u1")
        usd, over = results(llm, sales.id)
        assert usd.startswith("Error: currency USD is not accepted here (allowed: EUR)")
        assert over.startswith("Error: 150.00 EUR is above the limit of 100.00 EUR")
    assert await invoices(redis, tenant) == [] and await invoices(redis, strict) == []


async def test_an_invoice_is_issued_only_after_the_customers_own_confirming_turn(
    bus: Bus,
    redis: aioredis.Redis,
    nats_url: str,
    redis_url: str,
    fake_llm: tuple[OfflineLLM, str],
    uid: str,
) -> None:
    llm, url = fake_llm
    _, sales = pair(uid)
    tenant, session = f"t{uid}", f"s{uid}"
    me = {"tenant_id": tenant, "user_id": "u1"}
    issued = await bus.nc.subscribe(InvoiceCreated.subject)
    async with agents([sales], nats_url, redis_url, url):
        # The model drafts, then at once confirms its own draft with the code it was given.
        self_confirm = Scripted(delay_s=1.0)  # its tool call is filled in once the code exists
        llm.push(call("create_invoice", plan="team", seats=10, months=3), self_confirm,
                 Scripted(content="Done, it is issued."))  # fmt: skip
        drafting = asyncio.ensure_future(chat(bus, sales, "bill me for team", session, **me))
        while len(llm.requests_for(sales.id)) < 2:
            await asyncio.wait_for(llm.on_request.wait(), 10)
            llm.on_request.clear()
        draft = json.loads(tool_messages(llm.requests_for(sales.id)[1].messages)[0])
        code = draft["confirmation_code"]
        self_confirm.tool_calls = [{"name": "confirm_draft", "arguments": {"code": code}}]
        await drafting
        assert draft["status"] == "draft" and draft["amount"] == 450.0
        (own,) = results(llm, sales.id)[1:]
        assert own.startswith("Error: only the customer can confirm")

        (invoice,) = await invoices(redis, tenant)
        assert invoice["status"] == "draft" and invoice["amount"] == 450.0

        for who, text in (("u1", "yes please, go ahead"), ("u2", f"confirm {code}")):
            llm.push(call("confirm_draft", code=code), Scripted(content="Issued!"))
            await chat(bus, sales, text, session, tenant_id=tenant, user_id=who)
            (refused,) = results(llm, sales.id)
            assert refused.startswith("Error:"), (who, refused)
        assert (await invoices(redis, tenant))[0]["status"] == "draft"

        llm.push(call("confirm_draft", code=code), Scripted(content="Issued!"))
        await chat(bus, sales, f"Yes, I confirm {code.lower()}", session, **me)
        (done,) = results(llm, sales.id)
        assert json.loads(done)["status"] == "issued"

        llm.push(call("confirm_draft", code=code), Scripted(content="Again?"))  # a replay
        await chat(bus, sales, f"confirm {code}", session, **me)
        assert results(llm, sales.id)[0].startswith("Error: nothing waits for")
    (invoice,) = await invoices(redis, tenant)
    assert invoice["status"] == "issued" and invoice["customer_id"] == "u1"
    event = InvoiceCreated.from_bytes((await issued.next_msg(timeout=10)).data)
    assert event.invoice_id == invoice["id"] and event.user_id == "u1"
    await issued.unsubscribe()


async def test_a_model_injected_recipient_or_an_anonymous_caller_gets_no_invoice(
    bus: Bus,
    redis: aioredis.Redis,
    nats_url: str,
    redis_url: str,
    fake_llm: tuple[OfflineLLM, str],
    uid: str,
) -> None:
    llm, url = fake_llm
    _, sales = pair(uid)
    tenant = f"t{uid}"
    async with agents([sales], nats_url, redis_url, url):
        llm.push(
            call("create_invoice", plan="team", seats=10, billing_email="victim@other.example"),
            call("create_invoice", plan="team", seats=10, customer_id="uVictim"),
            Scripted(content="Sorry."),
        )
        await chat(bus, sales, "bill my friend", f"s{uid}", tenant_id=tenant, user_id="u1")
        email, customer = results(llm, sales.id)
        assert email.startswith("Error: create_invoice acts only for the customer")
        assert "billing_email" in email and "customer_id" in customer

        llm.push(call("create_invoice", plan="team", seats=10), Scripted(content="Sign in."))
        await chat(bus, sales, "bill me", f"anon{uid}", tenant_id=tenant)  # nobody signed in
        (anonymous,) = results(llm, sales.id)
        assert anonymous.startswith("Error: this needs a signed-in customer")
    assert await invoices(redis, tenant) == []
