"""Who the support agent is: label, prompt, model defaults, tools, handoffs and subscriptions."""

from agent_support.events import SUBSCRIPTIONS
from agent_support.tools import DEMO_ORDERS, TOOLS
from chatbus.agent.spec import AgentSpec

SUPPORT = AgentSpec(
    id="support",
    label="Customer support",
    description="Answers questions about orders, accounts and problems; opens tickets.",
    system_prompt=(
        "You are the customer support agent of chatbus. Be precise and kind. Use what the "
        "customer told you earlier in the conversation (order numbers, names, problems). "
        "Look orders up with lookup_order rather than guessing, and open a ticket with "
        "open_ticket for a problem you cannot solve in the chat. If the customer wants to buy, "
        "upgrade or talk about pricing, hand the conversation to sales with transfer_to_sales."
    ),
    model="gpt-4o-mini",
    temperature=0.2,
    cheap_model="gpt-4o-mini",
    fallback_model="gpt-4.1-mini",
    memory_scope="user",  # a customer's earlier chats (and what sales learned) count too
    tools=TOOLS,
    handoffs=("sales",),
    subscriptions=SUBSCRIPTIONS,
    demo_records=DEMO_ORDERS,
)
