"""Docker, compose, Railway and env files agree with the code: services, ports, paths, variables.

Docker does not run here, so these read the files the way Docker, Compose and Railway would
and check each fact against the packages and settings classes they deploy.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import tomllib

import pytest
from pydantic import ValidationError

from tests.ops.opsfiles import (
    BY_DIR,
    COMMON_ENV,
    INFRA,
    ROOT,
    SERVICES,
    Svc,
    build_args,
    commented_keys,
    compose_vars,
    dotenv,
    env_names,
    exec_form,
    load_compose,
    parse_dockerfile,
    render_dockerfile,
    settings_class,
    substitute,
)

svc_params = pytest.mark.parametrize("svc", SERVICES, ids=lambda s: s.dir)


def test_every_service_directory_is_deployed() -> None:
    dirs = {p.name for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").exists()}
    assert dirs == set(BY_DIR), "a service without deploy files, or deploy files without a service"


@svc_params
def test_package_runs_as_python_m(svc: Svc) -> None:
    project = tomllib.loads((svc.path / "pyproject.toml").read_text())
    assert project["project"]["name"] == svc.dist
    assert f"src/{svc.package}" in project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    pkg = svc.path / "src" / svc.package
    assert (pkg / "__init__.py").is_file()
    assert (pkg / "__main__.py").is_file(), f"`python -m {svc.package}` needs __main__.py"


def test_one_dockerfile_for_every_service() -> None:
    assert (ROOT / "Dockerfile").is_file()
    per_service = sorted(ROOT.glob("services/*/Dockerfile"))
    assert not per_service, f"one Dockerfile with a SERVICE build argument, not {per_service}"
    args = {i.args.split("=")[0] for i in parse_dockerfile(ROOT / "Dockerfile") if i.cmd == "ARG"}
    assert args == {"SERVICE", "PORT"}, args


@svc_params
def test_dockerfile(svc: Svc) -> None:
    """The Dockerfile as Docker builds it with this service's build arguments."""
    ins = render_dockerfile(ROOT / "Dockerfile", build_args(svc))
    last = max(i.stage for i in ins)
    assert last >= 1, "multi-stage: a build stage and a small runtime stage"
    froms = [i.args for i in ins if i.cmd == "FROM"]
    assert all(f.startswith("python:3.11") for f in froms), froms

    build = [i for i in ins if i.stage < last]
    assert any(
        i.cmd == "COPY" and i.args.startswith("--from=ghcr.io/astral-sh/uv:") for i in build
    ), "uv comes from its image"
    syncs = [i.args for i in build if i.cmd == "RUN" and "uv sync" in i.args]
    assert syncs and all(
        "--frozen" in s and "--no-dev" in s and s.endswith(f"--package {svc.dist}") for s in syncs
    ), syncs
    # Only the lockfile, shared/ and this service are copied in: never another service.
    for i in build:
        if i.cmd == "COPY" and not i.args.startswith("--from"):
            sources = i.args.split()[:-1]
            for src in sources:
                assert (
                    src in ("pyproject.toml", "uv.lock")
                    or src == "shared"
                    or src.startswith(("shared/", f"services/{svc.dir}/"))
                    or src == f"services/{svc.dir}"
                ), f"copies {src}"
                assert (ROOT / src).exists(), f"COPY source {src} does not exist"

    runtime = [i for i in ins if i.stage == last]
    users = [i.args for i in runtime if i.cmd == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "runs as a non-root user"
    venv = [i.args for i in runtime if i.cmd == "COPY" and i.args.startswith("--from=build")]
    assert venv and not any("--chown" in v for v in venv), "code stays root-owned"
    assert [i.args for i in runtime if i.cmd == "EXPOSE"] == [str(svc.port)]
    env = " ".join(i.args for i in runtime if i.cmd == "ENV")
    assert re.search(rf"\bPORT={svc.port}\b", env)
    assert "HOST=0.0.0.0" in env
    assert re.search(rf"\bOTEL_SERVICE_NAME={svc.dist}\b", env)
    health = [i.args for i in runtime if i.cmd == "HEALTHCHECK"]
    assert len(health) == 1 and "urllib" in health[0] and "/health" in health[0]
    probe = exec_form(health[0][health[0].index("CMD ") + 4 :])
    assert probe[:2] == ["python", "-c"]
    compile(probe[2], "HEALTHCHECK", "exec")
    assert "os.environ['PORT']" in health[0], "the health check asks the port the image sets"
    # The command execs the service's console script, so the service is PID 1 and gets SIGTERM.
    assert re.search(rf"\bCHATBUS_SERVICE={svc.dist}\b", env)
    cmd = [exec_form(i.args) for i in runtime if i.cmd == "CMD"]
    assert cmd == [["/bin/sh", "-c", 'exec "$CHATBUS_SERVICE"']]
    scripts = tomllib.loads((svc.path / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[svc.dist] == f"{svc.package}.__main__:main"
    assert callable(importlib.import_module(f"{svc.package}.__main__").main)


@svc_params
def test_railway_json(svc: Svc) -> None:
    cfg = json.loads((svc.path / "railway.json").read_text())
    assert cfg["build"]["builder"] == "DOCKERFILE"
    assert cfg["build"]["dockerfilePath"] == "Dockerfile"
    assert (ROOT / cfg["build"]["dockerfilePath"]).is_file()
    assert set(cfg["build"]["watchPatterns"]) == {
        f"services/{svc.dir}/**",
        "shared/**",
        "uv.lock",
        "Dockerfile",
    }
    assert cfg["deploy"]["startCommand"] == svc.dist
    assert cfg["deploy"]["healthcheckPath"] in ("/health", "/ready")


def test_compose_runs_the_full_stack() -> None:
    compose = load_compose()
    services = compose["services"]
    assert set(INFRA) | set(BY_DIR) <= set(services)
    assert services["nats"]["command"] == ["-c", "/etc/nats/nats.conf"], "durable JetStream"
    for name, spec in services.items():
        for dep in spec.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
        for vol in spec.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (ROOT / src).exists(), f"{name} mounts missing {src}"
            else:
                assert src in compose["volumes"], f"{name} uses undeclared volume {src}"
        if name in INFRA and name != "jaeger":
            assert "healthcheck" in spec, f"{name} has no health check"


@svc_params
def test_compose_service(svc: Svc) -> None:
    spec = load_compose()["services"][svc.dir]
    assert spec["build"] == {
        "context": ".",
        "dockerfile": "Dockerfile",
        "args": {k: str(v) for k, v in build_args(svc).items()},
    }
    env = {k: substitute(str(v)) for k, v in spec["environment"].items()}
    for key in (*COMMON_ENV, *svc.required_env):
        assert key in env, f"{svc.dir}: {key} not set in compose"
    assert env["PORT"] == str(svc.port)
    assert f"{svc.port}:{svc.port}" in spec["ports"]
    assert env["NATS_URL"].startswith("nats://nats:")
    assert env["REDIS_URL"].startswith("redis://redis:")
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    check = " ".join(spec["healthcheck"]["test"])
    assert re.search(rf"127\.0\.0\.1:{svc.port}/(health|ready)\b", check), check
    for infra in ("nats", "redis"):
        assert spec["depends_on"][infra]["condition"] == "service_healthy"
    if "QDRANT_URL" in svc.required_env:
        assert env["QDRANT_URL"].startswith("http://qdrant:")
        assert spec["depends_on"]["qdrant"]["condition"] == "service_healthy"
    if "OFFLINE_LLM_URL" in svc.required_env:
        host = env["OFFLINE_LLM_URL"].split("//")[1].split(":")[0]
        assert host in load_compose()["services"], "the offline model runs in the stack"


@svc_params
def test_compose_env_is_what_the_settings_read(svc: Svc, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every variable compose sets is read by the service, and the values validate."""
    cls = settings_class(svc)
    known = env_names(cls)
    spec = load_compose()["services"][svc.dir]
    env = {k: substitute(str(v)) for k, v in spec["environment"].items()}
    unknown = {k for k in env if k not in known and not k.startswith("OTEL_")}
    assert not unknown, f"{svc.dir}: compose sets variables the service never reads: {unknown}"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = cls(_env_file=None)
    assert settings.port == svc.port


def test_gateway_refuses_production_without_auth_or_admin_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cls = settings_class(BY_DIR["gateway"])
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("CHATBUS_AUTH", "off")
    monkeypatch.setenv("CHATBUS_ADMIN_KEY", "k" * 32)
    with pytest.raises(ValidationError, match="CHATBUS_AUTH"):
        cls(_env_file=None)
    monkeypatch.setenv("CHATBUS_AUTH", "on")
    monkeypatch.delenv("CHATBUS_ADMIN_KEY")
    with pytest.raises(ValidationError, match="CHATBUS_ADMIN_KEY"):
        cls(_env_file=None)
    monkeypatch.setenv("CHATBUS_ADMIN_KEY", "k" * 32)
    assert cls(_env_file=None).app_env == "production"


@pytest.mark.parametrize("svc", [BY_DIR["agent-support"]], ids=lambda s: s.dir)
def test_agents_refuse_production_without_an_llm_key(
    svc: Svc, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValidationError, match="OPENAI_API_KEY"):
        settings_class(svc)(_env_file=None)


@svc_params
def test_env_examples(svc: Svc) -> None:
    path = svc.path / ".env.example"
    values = dotenv(path)
    mentioned = set(values) | commented_keys(path)
    assert values["PORT"] == str(svc.port)
    assert values["APP_ENV"] in ("development", "staging", "production")
    for key in (*COMMON_ENV, *svc.required_env):
        assert key in mentioned, f"{path.name} of {svc.dir} does not mention {key}"
    known = env_names(settings_class(svc))
    unknown = {k for k in mentioned if k not in known and not k.startswith("OTEL_")}
    assert not unknown, f"{svc.dir}/.env.example names variables the service never reads: {unknown}"
    # Empty values reach the settings as "" rather than unset: optional keys stay commented.
    assert all(v for v in values.values()), "empty assignment in .env.example"


def test_root_env_example_covers_compose() -> None:
    path = ROOT / ".env.example"
    mentioned = set(dotenv(path)) | commented_keys(path)
    missing = compose_vars() - mentioned
    assert not missing, f".env.example does not document {missing}"
    text = path.read_text()
    assert not re.search(r"sk-[A-Za-z0-9]{16,}", text), "a real-looking key in .env.example"


def test_dockerignore_keeps_the_context_small_but_the_code_in() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in lines if p.strip() and not p.startswith("#")]
    for pattern in (".git", ".venv", "**/__pycache__", "**/.env"):
        assert pattern in patterns
    # Nothing that a Dockerfile copies may be ignored.
    for pattern in patterns:
        assert not pattern.startswith(("shared", "services", "devkit", "uv.lock", "pyproject.toml"))


def test_compose_runs_the_offline_model_from_the_devkit_image_only() -> None:
    """The offline model is development tooling: its own image, never a service's."""
    spec = load_compose()["services"]["offline-llm"]
    assert spec["build"] == {"context": ".", "dockerfile": "devkit/Dockerfile"}
    ins = parse_dockerfile(ROOT / "devkit/Dockerfile")
    syncs = [i.args for i in ins if i.cmd == "RUN" and "uv sync" in i.args]
    assert syncs and all("--frozen" in s and "--package chatbus-dev" in s for s in syncs)
    copied = {
        src
        for i in ins
        if i.cmd == "COPY" and not i.args.startswith("--from")
        for src in i.args.split()[:-1]
    }
    assert not any(src.startswith("services") for src in copied), copied
    assert all((ROOT / src).exists() for src in copied), copied
    [cmd] = [exec_form(i.args) for i in ins if i.cmd == "CMD"]
    assert spec["command"] == cmd
    assert cmd[:3] == ["python", "-m", "chatbus_dev.offline_llm"]
    assert importlib.util.find_spec(cmd[2]) is not None


@pytest.mark.parametrize(
    ("dotenv_lines", "model_at"),
    [
        ({}, "http://offline-llm:8099/v1"),
        ({"OPENAI_API_KEY": "sk-only-a-key"}, "https://api.openai.com/v1"),
        ({"OPENAI_BASE_URL": "http://ollama:11434/v1"}, "http://ollama:11434/v1"),
        (
            {"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": "http://vllm:8000/v1"},
            "http://vllm:8000/v1",
        ),
    ],
)
@pytest.mark.parametrize("agent", ["agent-support", "agent-sales"])
def test_compose_agents_reach_the_model_dotenv_names(
    agent: str,
    dotenv_lines: dict[str, str],
    model_at: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An .env with only OPENAI_API_KEY means OpenAI in compose, as it does for ./dev up."""
    from chatbus.agent.service import configured_llm

    spec = load_compose()["services"][agent]
    for key, value in spec["environment"].items():
        monkeypatch.setenv(key, substitute(str(value), dotenv_lines))
    chosen = configured_llm(settings_class(BY_DIR[agent])(_env_file=None))
    assert chosen is not None and chosen[0] == model_at
