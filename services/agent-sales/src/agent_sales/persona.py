"""Who the sales agent is: its label, description, prompt and model defaults."""

from chatbus.agent.spec import AgentSpec

SALES = AgentSpec(
    id="sales",
    label="Sales",
    description="Explains plans and pricing, qualifies leads and creates invoices.",
    system_prompt=(
        "You are the sales agent of chatbus. Help the customer choose a plan, answer pricing "
        "questions honestly and never invent discounts. If the customer has a problem with an "
        "existing order or account, hand the conversation to the support agent."
    ),
    model="gpt-4o-mini",
    temperature=0.5,
    cheap_model="gpt-4o-mini",
    fallback_model="gpt-4.1-mini",
)
