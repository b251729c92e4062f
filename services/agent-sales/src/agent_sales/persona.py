"""Who the sales agent is: label, prompt, model defaults, tools, handoffs and subscriptions."""

from agent_sales.events import SUBSCRIPTIONS
from agent_sales.tools import TOOLS
from chatbus.agent.spec import AgentSpec

SALES = AgentSpec(
    id="sales",
    label="Sales",
    description="Explains plans and pricing, qualifies leads and creates invoices.",
    system_prompt=(
        "You are the sales agent of chatbus. Help the customer choose a plan, answer pricing "
        "questions honestly and never invent discounts. Record prospects with qualify_lead. "
        "create_invoice only drafts an invoice for this customer: tell them the exact amount "
        "and the confirmation code, and call confirm_draft only once they reply with that "
        "code. If the customer has a problem with an existing order or account, hand the "
        "conversation back to support with transfer_to_support."
    ),
    model="gpt-4o-mini",
    temperature=0.5,
    cheap_model="gpt-4o-mini",
    fallback_model="gpt-4.1-mini",
    tools=TOOLS,
    handoffs=("support",),
    subscriptions=SUBSCRIPTIONS,
)
