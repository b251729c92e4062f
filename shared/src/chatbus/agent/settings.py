"""Settings of an agent service (one process = one agent, so plain names: ``MODEL``, ...)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, SecretStr, field_validator

from chatbus.settings import ServiceSettings

if TYPE_CHECKING:
    from chatbus.agent.drafts import TenantPolicies


class AgentSettings(ServiceSettings):
    # Every agent service's Redis keys start with chatbus.agent.keyspace.REDIS_PREFIX ("agent:").
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    # Where the offline model runs when neither of the above is set (`./dev up` and compose start
    # it; it is development tooling, chatbus_dev). None of the three: the agent does not start.
    offline_llm_url: str | None = None
    # Override the agent's defaults for this deployment.
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    cheap_model: str | None = None
    fallback_model: str | None = None
    history_turns: int = Field(default=10, ge=0, le=500)
    memory_enabled: bool = True
    memory_k: int = Field(default=5, ge=0, le=50)
    memory_threshold: float = Field(default=0.0, ge=-1, le=1)
    # Recall may use 5% of what is left of a message's deadline, at most this long; a memory
    # service slower than that is skipped and the reply says degraded: "memory".
    memory_recall_budget_s: float = Field(default=1.0, gt=0)
    # How long after a session's (or user's) last message the runtime remembers that memory
    # holds its turns; a session idle longer is searched again once it outgrows its history.
    memory_remembered_ttl_s: int = Field(default=90 * 86400, ge=86400)
    cost_enabled: bool = True
    cache_enabled: bool = True
    cache_ttl_s: float = Field(default=300, ge=0)
    context_budget_tokens: int = Field(default=3500, ge=100)
    # The cap of one model attempt; each attempt also ends with the message's deadline.
    llm_timeout_s: float = Field(default=60, gt=0)
    llm_retries: int = Field(default=2, ge=0, le=10)
    max_in_flight: int = Field(default=256, ge=1)
    max_tool_steps: int = Field(default=6, ge=1, le=50)
    # Money-moving tools (e.g. invoices): the most one call may ask for, the currencies it may
    # use, and how long a draft waits for the customer's confirmation; per tenant overrides
    # as JSON: {"acme": {"max_amount": 50000, "currencies": ["USD"]}}.
    money_max_amount: float = Field(default=10_000.0, ge=0)
    money_currencies: str = Field(default="USD,EUR", pattern=r"^[A-Za-z]{3}(,[A-Za-z]{3})*$")
    confirm_ttl_s: float = Field(default=900.0, gt=0, le=7 * 86400)
    tenant_policies_json: str | None = None
    # Demo records (e.g. orders 4471-4474) for "tenant/user,tenant/user": development only.
    demo_data: str = ""

    @field_validator("tenant_policies_json")
    @classmethod
    def _policies(cls, v: str | None) -> str | None:
        from chatbus.agent.drafts import MoneyPolicy, TenantPolicies

        try:
            TenantPolicies.parse(MoneyPolicy(), v)
        except ValueError as e:  # pydantic's ValidationError and JSON errors are ValueErrors
            raise ValueError(f"TENANT_POLICIES_JSON: {str(e).splitlines()[0]}") from None
        return v

    def money_policies(self) -> TenantPolicies:
        """The default money policy from these settings, with the per-tenant overrides."""
        from chatbus.agent.drafts import MoneyPolicy, TenantPolicies

        default = MoneyPolicy(
            max_amount=self.money_max_amount,
            currencies=tuple(self.money_currencies.split(",")),
            confirm_ttl_s=self.confirm_ttl_s,
        )
        return TenantPolicies.parse(default, self.tenant_policies_json)

    @field_validator("demo_data")
    @classmethod
    def _demo_owners(cls, v: str) -> str:
        for pair in filter(None, (p.strip() for p in v.split(","))):
            tenant, _, user = pair.partition("/")
            if not (tenant and user and len(tenant) <= 200 and len(user) <= 200):
                raise ValueError("DEMO_DATA: give tenant/user pairs, e.g. default/demo-user")
        return v

    def demo_owners(self) -> list[tuple[str, str]]:
        """The (tenant, user) pairs that get the agents' demo records."""
        pairs = (p.strip().partition("/") for p in self.demo_data.split(",") if p.strip())
        return [(tenant, user) for tenant, _, user in pairs]

    def check_production(self) -> None:
        if self.demo_data and self.app_env != "development":
            raise ValueError("DEMO_DATA seeds demo records in development only; unset it")
        if self.app_env == "production" and not (self.openai_api_key or self.openai_base_url):
            raise ValueError(
                "production needs a real model: set OPENAI_API_KEY (and/or OPENAI_BASE_URL); "
                "the built-in offline model is for development only"
            )
