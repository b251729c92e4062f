"""Settings of an agent service (one process = one agent, so plain names: ``MODEL``, ...)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from chatbus.settings import ServiceSettings


class AgentSettings(ServiceSettings):
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    # Override the agent's defaults for this deployment.
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    cheap_model: str | None = None
    fallback_model: str | None = None
    history_turns: int = Field(default=10, ge=0, le=500)
    memory_enabled: bool = True
    memory_k: int = Field(default=5, ge=0, le=50)
    memory_threshold: float = Field(default=0.0, ge=-1, le=1)
    cost_enabled: bool = True
    cache_enabled: bool = True
    cache_ttl_s: float = Field(default=300, ge=0)
    context_budget_tokens: int = Field(default=3500, ge=100)
    llm_timeout_s: float = Field(default=60, gt=0)
    llm_retries: int = Field(default=2, ge=0, le=10)
    max_in_flight: int = Field(default=256, ge=1)
    max_tool_steps: int = Field(default=6, ge=1, le=50)

    def check_production(self) -> None:
        if self.app_env == "production" and not (self.openai_api_key or self.openai_base_url):
            raise ValueError(
                "production needs a real model: set OPENAI_API_KEY (and/or OPENAI_BASE_URL); "
                "the built-in offline model is for development only"
            )
