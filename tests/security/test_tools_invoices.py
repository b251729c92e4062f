"""Issue 10, defect 11: the sales agent's invoice tool moves money — limits, drafts, consent.

The fake model plays a manipulated model: it asks for a $162,000,000 invoice, a currency the
tenant does not take, a recipient of its choosing, and it tries to confirm its own drafts. An
invoice is issued only when the customer's own later message carries the draft's code.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from chatbus.contracts.events import InvoiceCreated
from chatbus_dev.offline_llm import Scripted
from tests.collab.collab_harness import Crew, call

pytestmark = pytest.mark.timeout(90)


async def test_over_limit_and_refused_currency_invoices_are_not_created(crew: Crew) -> None:
    sales, llm = crew.sales, crew.llm
    tenant, strict = f"t{crew.uid}", f"strict{crew.uid}"
    policies = json.dumps({strict: {"max_amount": 100, "currencies": ["EUR"]}})
    async with crew.running(sales, tenant_policies_json=policies):
        llm.push(
            call("create_invoice", plan="enterprise", seats=100_000, months=36),  # $162,000,000
            call("create_invoice", plan="team", seats=10, currency="JPY"),
            Scripted(content="Sorry."),
        )
        await crew.chat(sales, "bill me", f"s{crew.uid}", tenant_id=tenant, user_id="u1")
        huge, yen = crew.results(sales)
        assert huge.startswith("Error: 162,000,000.00 USD is above the limit of 10,000.00 USD")
        assert yen.startswith("Error: currency JPY is not accepted here (allowed: USD, EUR)")

        llm.push(  # this tenant's own policy: EUR only, at most 100
            call("create_invoice", plan="team", seats=10),
            call("create_invoice", plan="team", seats=10, currency="EUR"),
            Scripted(content="Sorry."),
        )
        await crew.chat(sales, "bill me", f"s{crew.uid}", tenant_id=strict, user_id="u1")
        usd, over = crew.results(sales)
        assert usd.startswith("Error: currency USD is not accepted here (allowed: EUR)")
        assert over.startswith("Error: 150.00 EUR is above the limit of 100.00 EUR")
    assert await crew.records.list(tenant, "invoice") == []
    assert await crew.records.list(strict, "invoice") == []


async def test_an_invoice_is_issued_only_after_the_customers_own_confirming_turn(
    crew: Crew,
) -> None:
    sales, llm = crew.sales, crew.llm
    tenant, session = f"t{crew.uid}", f"s{crew.uid}"
    me = {"tenant_id": tenant, "user_id": "u1"}
    issued = await crew.bus.nc.subscribe(InvoiceCreated.subject)
    async with crew.running(sales):
        # The model drafts, then at once confirms its own draft with the code it was given.
        self_confirm = Scripted(delay_s=1.0)  # its tool call is filled in once the code exists
        llm.push(call("create_invoice", plan="team", seats=10, months=3), self_confirm,
                 Scripted(content="Done, it is issued."))  # fmt: skip
        drafting = asyncio.ensure_future(crew.chat(sales, "bill me for team", session, **me))
        while len(llm.requests_for(sales.id)) < 2:
            await asyncio.wait_for(llm.on_request.wait(), 10)
            llm.on_request.clear()
        draft = json.loads(crew.results(sales)[0])
        code = draft["confirmation_code"]
        self_confirm.tool_calls = [{"name": "confirm_draft", "arguments": {"code": code}}]
        reply = await drafting
        assert draft["status"] == "draft" and draft["amount"] == 450.0
        # Whatever the model claims, the runtime itself shows the real amount and the code.
        assert reply.reply.startswith("Done, it is issued.")
        assert f"INV-{draft['invoice_id'][4:]}: 450.00 USD" in reply.reply
        assert f"reply with: confirm {code}" in reply.reply
        assert crew.results(sales)[1].startswith("Error: only the customer can confirm")
        (invoice,) = await crew.records.list(tenant, "invoice")
        assert invoice["status"] == "draft"

        # Neither the customer's "yes" without the code, nor another user with the code.
        for who, text in (("u1", "yes please, go ahead"), ("u2", f"confirm {code}")):
            llm.push(call("confirm_draft", code=code), Scripted(content="Issued!"))
            await crew.chat(sales, text, session, tenant_id=tenant, user_id=who)
            (refused,) = crew.results(sales)
            assert refused.startswith("Error:"), (who, refused)
        assert (await crew.records.list(tenant, "invoice"))[0]["status"] == "draft"

        llm.push(call("confirm_draft", code=code), Scripted(content="Issued!"))
        await crew.chat(sales, f"Yes, I confirm {code.lower()}", session, **me)
        assert json.loads(crew.results(sales)[0])["status"] == "issued"

        llm.push(call("confirm_draft", code=code), Scripted(content="Again?"))  # a replay
        await crew.chat(sales, f"confirm {code}", session, **me)
        assert crew.results(sales)[0].startswith("Error: nothing waits for")
    (invoice,) = await crew.records.list(tenant, "invoice")
    assert invoice["status"] == "issued" and invoice["customer_id"] == "u1"
    event = InvoiceCreated.from_bytes((await issued.next_msg(timeout=10)).data)
    assert event.invoice_id == invoice["id"] and event.user_id == "u1"
    await issued.unsubscribe()


async def test_a_model_injected_recipient_or_an_anonymous_caller_gets_no_invoice(
    crew: Crew,
) -> None:
    sales, tenant = crew.sales, f"t{crew.uid}"
    async with crew.running(sales):
        crew.llm.push(
            call("create_invoice", plan="team", seats=10, billing_email="victim@other.example"),
            call("create_invoice", plan="team", seats=10, customer_id="uVictim"),
            Scripted(content="Sorry."),
        )
        await crew.chat(sales, "bill my friend", f"s{crew.uid}", tenant_id=tenant, user_id="u1")
        email, customer = crew.results(sales)
        assert email.startswith("Error: create_invoice acts only for the customer")
        assert "billing_email" in email and "customer_id" in customer

        crew.llm.push(call("create_invoice", plan="team", seats=10), Scripted(content="Sign in."))
        await crew.chat(sales, "bill me", f"anon{crew.uid}", tenant_id=tenant)  # nobody signed in
        (anonymous,) = crew.results(sales)
        assert anonymous.startswith("Error: this needs a signed-in customer")
    assert await crew.records.list(tenant, "invoice") == []
