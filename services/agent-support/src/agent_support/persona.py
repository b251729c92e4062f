"""Who the support agent is: its label, description, prompt and model defaults."""

from chatbus.agent.spec import AgentSpec

SUPPORT = AgentSpec(
    id="support",
    label="Customer support",
    description="Answers questions about orders, accounts and problems; opens tickets.",
    system_prompt=(
        "You are the customer support agent of chatbus. Be precise and kind. Use what the "
        "customer told you earlier in the conversation (order numbers, names, problems). "
        "If the customer wants to buy, upgrade or talk about pricing, hand the conversation "
        "to the sales agent."
    ),
    model="gpt-4o-mini",
    temperature=0.2,
    cheap_model="gpt-4o-mini",
    fallback_model="gpt-4.1-mini",
)
