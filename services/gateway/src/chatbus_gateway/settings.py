"""Gateway settings: read once in ``main()`` from the environment, then passed down."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator

from chatbus.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    """Everything the gateway can be tuned with. A limit of 0 switches that limit off."""

    service_name: str = "gateway"

    # -- auth -------------------------------------------------------------------------------
    # "off" is for local development only: every caller is the "default" tenant and admin.
    auth: Literal["on", "off"] = Field(
        default="off", validation_alias=AliasChoices("CHATBUS_AUTH", "auth")
    )
    admin_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("CHATBUS_ADMIN_KEY", "admin_key")
    )
    # How long a looked-up API key is trusted before Redis is asked again (revocation delay).
    key_cache_s: float = Field(default=5.0, ge=0)
    # Trust X-Forwarded-For for the client IP (only behind one proxy that sets or appends it:
    # its last address is taken).
    trust_forwarded_for: bool = False

    # Prefix of every Redis key the gateway writes (replicas that share limits share it).
    redis_prefix: str = "gw:"  # every Redis key of the gateway (it owns them)
    # DELETE /api/sessions|users/{id} waits this long for every owner's confirmation (then 202).
    forget_wait_s: float = Field(default=5.0, gt=0, le=60)

    # -- requests ---------------------------------------------------------------------------
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    max_message_chars: int = Field(default=8000, ge=1)
    request_timeout_s: float = Field(default=30.0, gt=0)
    # How long GET /api/agents collects introductions from running agents.
    agents_window_s: float = Field(default=0.2, gt=0, le=5)

    # -- rate limits (per minute; 0 = unlimited) --------------------------------------------
    rate_ip_per_min: int = Field(default=30, ge=0)
    # Failed authentications per client address (they count toward rate_ip_per_min too);
    # past this the address gets 429 for the rest of the minute, whatever key it sends.
    rate_auth_fail_ip_per_min: int = Field(default=10, ge=0)
    rate_key_per_min: int = Field(default=600, ge=0)
    rate_user_per_min: int = Field(default=60, ge=0)
    rate_session_per_min: int = Field(default=30, ge=0)
    tokens_key_per_min: int = Field(default=200_000, ge=0)

    # -- per-session order, idempotency -----------------------------------------------------
    # The lease on a session's turn: renewed while the agent answers, so a turn passes on
    # this long after its gateway died (a waiting message looks every third of it).
    session_turn_timeout_s: float = Field(default=10.0, gt=0)
    idempotency_ttl_s: int = Field(default=86400, ge=1)
    # Idempotency-Key claims and replies of chats (NATS KV: a Redis restart loses none).
    idempotency_bucket: str = Field(default="gateway_idempotency", pattern=r"^[A-Za-z0-9_-]{1,64}$")

    # -- async jobs -------------------------------------------------------------------------
    jobs_stream: str = "GATEWAY_JOBS"
    jobs_subject: str = "gateway.jobs.v1"
    job_ttl_s: int = Field(default=86400, ge=1)
    job_max_deliver: int = Field(default=5, ge=1)
    job_backoff_s: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    job_concurrency: int = Field(default=16, ge=1)
    # Job records (and async Idempotency-Key claims) live in this NATS KV bucket.
    jobs_bucket: str = Field(default="gateway_jobs", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    # A job is answered within this time of being accepted (or re-driven), or dead-lettered.
    job_deadline_s: float = Field(default=3600.0, gt=0)
    # With no instance of its agent running, a job waits (not counted as an attempt) for at
    # most this long, asked again every job_agent_poll_s at most, then it is dead-lettered.
    job_agent_wait_max_s: float = Field(default=900.0, gt=0)
    job_agent_poll_s: float = Field(default=2.0, gt=0)
    # Job callbacks: each POST within callback_timeout_s; network errors, 408, 429 and 5xx
    # are retried on this schedule, then the callback is parked on the dead-letter stream.
    callback_timeout_s: float = Field(default=5.0, gt=0)
    callbacks_stream: str = "GATEWAY_CALLBACKS"
    callbacks_subject: str = "gateway.callbacks.v1"
    callback_max_deliver: int = Field(default=8, ge=1)
    callback_backoff_s: tuple[float, ...] = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0)
    # When set, every callback carries X-Chatbus-Signature: t=<unix time>,v1=<hex HMAC-SHA256
    # of "<t>.<body>"> so the receiver can check it came from this gateway.
    callback_secret: SecretStr | None = None
    # Callbacks go only to public addresses (https only in production); these hosts, IP
    # addresses or networks (comma-separated) are allowed besides, e.g. "hooks.internal,10.0.0.0/8".
    callback_allow_hosts: str = ""

    @model_validator(mode="after")
    def _job_bounds(self) -> GatewaySettings:
        if self.job_deadline_s > self.job_ttl_s:
            raise ValueError(
                "JOB_DEADLINE_S must not exceed JOB_TTL_S (the record must outlive it)"
            )
        return self

    def check_production(self) -> None:
        if self.app_env == "production" and self.auth != "on":
            raise ValueError("CHATBUS_AUTH must be 'on' in production")
        if self.app_env == "production" and not self.admin_key:
            raise ValueError("CHATBUS_ADMIN_KEY is required in production")
        self.require_strong("CHATBUS_ADMIN_KEY", self.admin_key)
        self.require_strong("CALLBACK_SECRET", self.callback_secret)

    @property
    def auth_on(self) -> bool:
        return self.auth == "on"
