"""What the deployment files must agree on, and small parsers for them."""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Svc:
    dir: str
    package: str
    dist: str
    port: int
    settings: str  # "module:Class" of the service's settings
    required_env: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        return ROOT / "services" / self.dir


COMMON_ENV = ("APP_ENV", "NATS_URL", "REDIS_URL", "PORT", "HOST", "DATA_DIR", "OTEL_SERVICE_NAME")
AGENT_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OFFLINE_LLM_URL", "MODEL", "TEMPERATURE")

SERVICES = [
    Svc("gateway", "chatbus_gateway", "chatbus-gateway", 8080,
        "chatbus_gateway.settings:GatewaySettings", ("CHATBUS_AUTH",)),
    Svc("agent-support", "agent_support", "chatbus-agent-support", 8081,
        "chatbus.agent.settings:AgentSettings", AGENT_ENV),
    Svc("agent-sales", "agent_sales", "chatbus-agent-sales", 8082,
        "chatbus.agent.settings:AgentSettings", AGENT_ENV),
    Svc("memory", "chatbus_memory", "chatbus-memory", 8083,
        "chatbus_memory.settings:MemorySettings", ("QDRANT_URL", "EMBEDDINGS")),
    Svc("cost", "chatbus_cost", "chatbus-cost", 8084, "chatbus_cost.__main__:CostSettings"),
]  # fmt: skip
BY_DIR = {s.dir: s for s in SERVICES}
INFRA = ("nats", "redis", "qdrant", "jaeger", "prometheus", "alertmanager", "grafana")


def settings_class(svc: Svc) -> Any:
    module, name = svc.settings.split(":")
    return getattr(importlib.import_module(module), name)


def env_names(cls: Any) -> set[str]:
    """The environment variable names a pydantic-settings class reads."""
    names: set[str] = set()
    for field, info in cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(c).upper() for c in alias.choices if isinstance(c, str))
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(field.upper())
    return names


def load_compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


_SUBST = re.compile(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")


def substitute(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ``${VAR:-default}`` with an empty environment (the defaults)."""
    env = env or {}
    return _SUBST.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)


def compose_vars() -> set[str]:
    """Every ``${VAR}`` docker-compose.yml substitutes."""
    return {m[0] for m in _SUBST.findall((ROOT / "docker-compose.yml").read_text())}


@dataclass
class Instruction:
    cmd: str
    args: str
    stage: int


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined; ``stage`` counts FROM lines (0-based)."""
    out: list[Instruction] = []
    stage = -1
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        full = (buf + line).strip()
        buf = ""
        cmd, _, args = full.partition(" ")
        cmd = cmd.upper()
        if cmd == "FROM":
            stage += 1
        out.append(Instruction(cmd, args.strip(), stage))
    assert not buf, f"{path}: dangling line continuation"
    return out


def build_args(svc: Svc) -> dict[str, str]:
    """The build arguments the one Dockerfile takes for a service (compose passes these)."""
    return {"SERVICE": svc.dir, "PORT": str(svc.port)}


_ARG_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def _expand(text: str, scope: dict[str, str]) -> str:
    return _ARG_REF.sub(lambda m: scope.get(m[1] or m[2], m[0]), text)


def render_dockerfile(path: Path, build_args: dict[str, str]) -> list[Instruction]:
    """The instructions with ``ARG`` values substituted the way Docker does it: an ``ARG`` is
    in scope from its declaration to the end of its stage (RUN's shell sees it too); a build
    argument overrides its default; other references (``ENV`` values) are left as written."""
    out: list[Instruction] = []
    scope: dict[str, str] = {}
    stage = -1
    for ins in parse_dockerfile(path):
        if ins.stage != stage:
            stage, scope = ins.stage, {}
        if ins.cmd == "ARG":
            name, _, default = ins.args.partition("=")
            scope[name] = build_args.get(name, default)
            continue
        out.append(Instruction(ins.cmd, _expand(ins.args, scope), ins.stage))
    return out


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def dotenv(path: Path) -> dict[str, str]:
    """KEY=value lines of a .env file (comments and commented-out keys skipped)."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f"{path}: bad line {line!r}"
        out[key] = value
    return out


def commented_keys(path: Path) -> set[str]:
    return set(re.findall(r"^# ([A-Z][A-Z0-9_]*)=", path.read_text(), flags=re.M))
