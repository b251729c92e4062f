"""Service settings, read once at start from the environment (and a ``.env`` file).

Each service subclasses :class:`ServiceSettings` with its own fields. Settings are read in
``main()`` and passed down; nothing reads the environment at import time or in a handler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """What every service needs: where the bus and Redis are, its HTTP port, logging."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        env_ignore_empty=True,  # OPENAI_BASE_URL= means unset, not ""
    )

    service_name: str = "chatbus"
    app_env: Literal["development", "staging", "production"] = "development"
    nats_url: str = "nats://127.0.0.1:4222"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Connections to Redis; a caller waits up to redis_wait_s for a free one instead of failing.
    redis_max_connections: int = Field(default=256, ge=4)
    redis_wait_s: float = Field(default=5.0, gt=0)
    # HTTP port for /health, /ready and /metrics (the gateway serves its API there too).
    port: int = Field(default=8080, ge=0, le=65535)
    host: str = "0.0.0.0"
    data_dir: Path = Path(".data")
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    # Message contents in logs: off by default; never in production unless set explicitly.
    log_content: bool = False
    alert_webhook_url: SecretStr | None = None
    alert_cooldown_s: float = Field(default=300.0, ge=0)

    @model_validator(mode="after")
    def _production_rules(self) -> ServiceSettings:
        self.check_production()
        return self

    def check_production(self) -> None:
        """Refuse settings that must not reach production. Subclasses extend this."""

    def secrets(self) -> list[str]:
        """Every secret value in these settings, so logs can redact them."""
        out: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                out.append(value.get_secret_value())
        return out
