"""A failed start never prints a secret, not even in part; production refuses weak secrets.

Issue 10, defects 9 and 10: with a bad setting, the validation error's ``input_value`` showed
the tail of CHATBUS_ADMIN_KEY (also CALLBACK_SECRET); production accepted
``CHATBUS_ADMIN_KEY=a``.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

# Letters that never make four in a row in English, paths or pydantic's messages.
ALPHABET = "QXZJVKqxzjvk"


def _secret(n: int = 40) -> str:
    return "".join(random.choice(ALPHABET) for _ in range(n))


def _start(module: str, env: dict[str, str]) -> tuple[int, str]:
    """Run ``python -m module`` with ``env``; its exit code and everything it printed."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("CHATBUS_", "CALLBACK_"))}
    full.update(env)
    done = subprocess.run(
        [sys.executable, "-m", module],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(__file__),  # no .env file here
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def _leaks(secret: str, output: str) -> list[str]:
    return [secret[i : i + 4] for i in range(len(secret) - 3) if secret[i : i + 4] in output]


@pytest.mark.parametrize(
    "bad",
    [
        {"RATE_IP_PER_MIN": "-5"},  # a field rule
        {"CHATBUS_AUTH": "off"},  # a rule on the whole model: printed every input's tail
        {"CHATBUS_ADMIN_KEY": "VKQXZJ"},  # too short for production
    ],
    ids=["field", "model", "short-key"],
)
def test_a_failed_gateway_start_prints_no_part_of_any_secret(bad: dict[str, str]) -> None:
    secrets = {
        "CHATBUS_ADMIN_KEY": _secret(),
        "CALLBACK_SECRET": _secret(),
    }
    env = {"APP_ENV": "production", "CHATBUS_AUTH": "on", **secrets, **bad}
    code, output = _start("chatbus_gateway", env)
    assert code != 0
    assert "validation error" in output  # it did fail on the settings, and says why
    for name, value in env.items():
        if name in secrets or name == "CHATBUS_ADMIN_KEY":
            secret = value.removeprefix("https://hooks.example/")
            assert not _leaks(secret, output), f"{name} leaked: {output}"


def test_an_agent_start_prints_no_part_of_its_llm_key() -> None:
    key = _secret()
    code, output = _start(
        "agent_support", {"APP_ENV": "production", "OPENAI_API_KEY": key, "PORT": "x"}
    )
    assert code != 0 and "port" in output
    assert not _leaks(key, output), output


@pytest.mark.parametrize("name", ["CHATBUS_ADMIN_KEY", "CALLBACK_SECRET"])
def test_production_refuses_secrets_shorter_than_32_characters(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import ValidationError

    from chatbus_gateway.settings import GatewaySettings

    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("CHATBUS_AUTH", "on")
    monkeypatch.setenv("CHATBUS_ADMIN_KEY", "K" * 32)
    monkeypatch.setenv(name, "a")
    with pytest.raises(ValidationError, match=f"{name} must be at least 32 characters") as e:
        GatewaySettings(_env_file=None)  # type: ignore[call-arg]
    assert "'a'" not in str(e.value) and all(err["input"] != "a" for err in e.value.errors())
    monkeypatch.setenv(name, "K" * 32)
    assert GatewaySettings(_env_file=None).app_env == "production"  # type: ignore[call-arg]
    monkeypatch.setenv("APP_ENV", "development")
    monkeypatch.setenv(name, "a")  # development keeps short keys for local use
    assert GatewaySettings(_env_file=None).app_env == "development"  # type: ignore[call-arg]


def test_a_password_in_a_service_url_is_kept_out_of_logs(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """``NATS_URL=nats://user:password@host`` (or a NATS token, a Redis password) is a plain
    setting: the log redactor did not know its password, and the message of a service that
    could not reach NATS named the URL whole."""
    import logging

    from chatbus.settings import ServiceSettings, without_credentials
    from chatbus.telemetry import setup_logging

    password, token, other = _secret(), _secret(), _secret()
    settings = ServiceSettings(
        nats_url=f"nats://svc:{password}@127.0.0.1:1,nats://{token}@127.0.0.1:2",
        redis_url=f"redis://gw:{other}@127.0.0.1:1/0",
    )
    assert {password, token, other} <= set(settings.secrets())  # the log redactor knows them
    named = without_credentials(settings.nats_url)
    assert named == "nats://127.0.0.1:1,nats://127.0.0.1:2"
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("t", "INFO", "json", settings.secrets())
        logging.getLogger("t").warning(
            "cannot reach %s / %s", settings.nats_url, settings.redis_url
        )
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    logged = capfd.readouterr().err
    assert "cannot reach" in logged
    assert not any(_leaks(s, logged) for s in (password, token, other)), logged


@pytest.mark.parametrize("odd", ["\u00dcml\u00e4ut", 'a"quote', "a\\backslash", "tab\there"])
def test_a_secret_that_json_escapes_is_still_redacted_in_json_logs(
    capfd: pytest.CaptureFixture[str], odd: str
) -> None:
    """A JSON log line spells ``ü`` as ``\\u00fc`` and ``"`` as ``\\"``: the redactor looked
    only for the secret as written, so such a secret went out whole."""
    import json
    import logging

    from chatbus.telemetry import setup_logging

    secret = odd + _secret(32)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("t", "INFO", "json", [secret])
        logging.getLogger("t").warning("the key is %s", secret)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    logged = capfd.readouterr().err
    assert "the key is [REDACTED]" in json.loads(logged.splitlines()[-1])["message"]
    assert not _leaks(secret[len(odd) :], logged), logged
