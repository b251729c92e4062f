"""Service settings, read once at start from the environment (and a ``.env`` file).

Each service subclasses :class:`ServiceSettings` with its own fields. Settings are read in
``main()`` and passed down; nothing reads the environment at import time or in a handler.

Every chatbus program reads the same settings the same way: the process environment first,
then the lines of ``.env`` in the working directory (:data:`ENV_FILE`), an empty value meaning
unset. Services get this from pydantic-settings; ``chatbus`` (the CLI and the local runner) calls
:func:`load_env_file` once at start, which parses the file with the same parser (python-dotenv)
and puts what the environment lacks into it, so everything the runner starts sees it too.
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_core import InitErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

# Secrets shorter than this are refused in production (admin keys, signing secrets).
MIN_SECRET_CHARS = 32

ENV_FILE = ".env"


def read_env_file(path: Path | str = ENV_FILE) -> dict[str, str]:
    """The non-empty settings of a ``.env`` file (none when it does not exist)."""
    from dotenv import dotenv_values

    if not Path(path).is_file():
        return {}
    return {k: v for k, v in dotenv_values(path, encoding="utf-8").items() if v}


def load_env_file(
    path: Path | str = ENV_FILE, environ: MutableMapping[str, str] | None = None
) -> dict[str, str]:
    """Put the settings of ``path`` that ``environ`` (``os.environ``) lacks into it.

    A variable set in the environment wins over the file, as in every service; an empty one
    counts as unset. Returns what was added.
    """
    env = os.environ if environ is None else environ
    added = {k: v for k, v in read_env_file(path).items() if not env.get(k)}
    env.update(added)
    return added


class ServiceSettings(BaseSettings):
    """What every service needs: where the bus and Redis are, its HTTP port, logging."""

    model_config = SettingsConfigDict(
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        env_ignore_empty=True,  # OPENAI_BASE_URL= means unset, not ""
        # A bad setting's error must never print a value: the environment holds secrets.
        hide_input_in_errors=True,
    )

    def __init__(self, **values: Any) -> None:
        """Read the settings; a bad one raises a ``ValidationError`` that names the setting
        and the rule, and holds no value read (its ``errors()`` included) - not even a tail
        of a secret printed by a rule on the whole model."""
        try:
            super().__init__(**values)
        except ValidationError as e:
            raise _without_inputs(e) from None

    service_name: str = "chatbus"
    app_env: Literal["development", "staging", "production"] = "development"
    nats_url: str = "nats://127.0.0.1:4222"
    # Copies of each JetStream stream and KV bucket; unset: 3 on a cluster of 3+ nodes, else 1.
    nats_replicas: int | None = Field(default=None, ge=1, le=5)
    redis_url: str = "redis://127.0.0.1:6379/0"
    # How long a Redis command waits for its reply (RedisLink: one connection per process).
    redis_wait_s: float = Field(default=5.0, gt=0)
    # HTTP port for /health, /ready and /metrics (the gateway serves its API there too).
    port: int = Field(default=8080, ge=0, le=65535)
    host: str = "0.0.0.0"
    # HTTP connections (``chatbus.http_guard``): a request's head must arrive within
    # http_header_timeout_s, its body within http_body_timeout_s (else 408, closed); a
    # kept-alive connection idle for http_idle_timeout_s is closed; at most
    # http_max_connections_per_ip are open per client address (0 = no cap; raise it behind a
    # proxy, whose address every client shares).
    http_header_timeout_s: float = Field(default=5.0, gt=0, le=300)
    http_body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    http_idle_timeout_s: float = Field(default=15.0, gt=0, le=3600)
    http_max_connections_per_ip: int = Field(default=128, ge=0)
    data_dir: Path = Path(".data")
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    # Message contents in logs: off by default; never in production unless set explicitly.
    log_content: bool = False

    @model_validator(mode="after")
    def _production_rules(self) -> ServiceSettings:
        self.check_production()
        return self

    def check_production(self) -> None:
        """Refuse settings that must not reach production. Subclasses extend this."""

    def require_strong(self, name: str, value: SecretStr | None) -> None:
        """In production, refuse a secret shorter than ``MIN_SECRET_CHARS`` (never shown)."""
        if self.app_env == "production" and value is not None:
            if len(value.get_secret_value()) < MIN_SECRET_CHARS:
                raise ValueError(
                    f"{name} must be at least {MIN_SECRET_CHARS} characters in production "
                    "(e.g. `openssl rand -hex 32`)"
                )

    def secrets(self) -> list[str]:
        """Every secret value in these settings, so logs can redact them."""
        out: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                out.append(value.get_secret_value())
            elif isinstance(value, str) and "@" in value:  # a URL's password or token
                out += url_credentials(value)
        return out


def url_credentials(urls: str) -> list[str]:
    """The passwords (and NATS tokens: a user name alone) in a URL or comma-separated URLs."""
    out = []
    for url in urls.split(","):
        try:
            parts = urlsplit(url.strip())
            secret = parts.password or (parts.username if parts.scheme.startswith("nats") else "")
        except ValueError:
            continue
        if secret:
            out += [secret, unquote(secret)]
    return out


def without_credentials(urls: str) -> str:
    """``urls`` with every user name and password dropped, to name a server in a message."""
    return ",".join(re.sub(r"//[^/@]*@", "//", url) for url in urls.split(","))


def _without_inputs(e: ValidationError) -> ValidationError:
    """``e`` with every input value replaced: what was read may be a secret."""
    details: list[InitErrorDetails] = []
    for err in e.errors(include_url=False):
        detail: InitErrorDetails = {"type": err["type"], "loc": err["loc"], "input": "<hidden>"}
        if "ctx" in err:
            detail["ctx"] = err["ctx"]
        details.append(detail)
    return ValidationError.from_exception_data(e.title, details, hide_input=True)
