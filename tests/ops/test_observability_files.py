"""Prometheus, alert rules, Grafana and CI workflows name real metrics, services and checks."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from chatbus.metrics import Metrics
from tests.ops.opsfiles import BY_DIR, ROOT, env_names, load_compose, settings_class

INFRA_DIR = ROOT / "infra"
PROM = INFRA_DIR / "prometheus"
DASHBOARD = ROOT / "infra" / "grafana" / "dashboards" / "chatbus.json"
promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    promtool is None, reason="promtool not installed (Debian package `prometheus`)"
)


def metric_names() -> set[str]:
    """Every series name a Metrics registry exposes (counters with _total, histogram parts)."""
    registry = CollectorRegistry()
    Metrics(registry, "test")
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(s.name for s in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + x for x in ("_bucket", "_sum", "_count"))
    return names


def chatbus_metrics_in(expr: str) -> set[str]:
    return set(re.findall(r"\bchatbus_[a-z0-9_]+\b", expr)) - {"chatbus"}


def alert_rules() -> list[dict[str, str]]:
    doc = yaml.safe_load((PROM / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def test_prometheus_scrapes_every_service_on_its_port() -> None:
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "chatbus")
    assert job["metrics_path"] == "/metrics"
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{s.dir}:{s.port}" for s in BY_DIR.values()}
    assert set(load_compose()["services"]) >= {t.split(":")[0] for t in targets}
    assert config["rule_files"] == ["alerts.yml"]


def test_alert_rules_cover_the_alert_conditions() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    used = {name: chatbus_metrics_in(rule["expr"]) for name, rule in rules.items()}
    everything = set().union(*used.values())
    # error rate, LLM failures, budget crossings, dead letters
    for metric in (
        "chatbus_messages_total",
        "chatbus_llm_errors_total",
        "chatbus_budget_remaining_usd",
        "chatbus_dead_letters_total",
    ):
        assert metric in everything, f"no alert rule on {metric}"
    assert {"ChatbusBudgetHardLimit", "ChatbusBudgetSoftLimit"} <= set(rules)


def test_rules_and_dashboard_use_only_real_metric_names() -> None:
    real = metric_names()
    for rule in alert_rules():
        assert chatbus_metrics_in(rule["expr"]) <= real, rule["alert"]
    for expr in dashboard_exprs():
        assert chatbus_metrics_in(expr) <= real, expr


def test_dashboard_shows_what_operators_look_at() -> None:
    dash = json.loads(DASHBOARD.read_text())
    text = " ".join(dashboard_exprs())
    for needle in (
        "rate(chatbus_messages_total",
        "histogram_quantile(0.5, sum by (le, route) (rate(chatbus_request_duration_seconds",
        "histogram_quantile(0.99, sum by (le, route) (rate(chatbus_request_duration_seconds",
        "sum by (agent, model, kind) (rate(chatbus_tokens_total",
        "sum by (agent, model) (increase(chatbus_cost_usd_total",
        'chatbus_cache_requests_total{service=~"$service",result="hit"}',
        "chatbus_queue_pending_messages",
        'outcome!~"ok|degraded_.*"',
    ):
        assert needle in text, needle
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "prometheus"


def test_grafana_is_provisioned_from_the_mounted_folders() -> None:
    prov = ROOT / "infra" / "grafana" / "provisioning"
    sources = yaml.safe_load((prov / "datasources" / "datasources.yml").read_text())
    prom = next(d for d in sources["datasources"] if d["type"] == "prometheus")
    assert prom["uid"] == "prometheus" and prom["url"] == "http://prometheus:9090"
    boards = yaml.safe_load((prov / "dashboards" / "dashboards.yml").read_text())
    path = boards["providers"][0]["options"]["path"]
    grafana = load_compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2][::-1] for v in grafana["volumes"])
    assert (ROOT / mounts[path]).resolve() == DASHBOARD.parent
    assert (ROOT / mounts["/etc/grafana/provisioning"]).resolve() == prov


@needs_promtool
def test_promtool_accepts_config_and_rules_and_their_unit_tests() -> None:
    assert promtool is not None
    for args in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ):
        done = subprocess.run([promtool, *args], cwd=PROM, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    rules = [
        {"record": f"chatbus:dashboard_{i}", "expr": expr}
        for i, expr in enumerate(
            e.replace("$__rate_interval", "5m").replace("$service", ".*") for e in dashboard_exprs()
        )
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert promtool is not None
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ci_runs_lint_types_and_tests_against_nats_and_redis() -> None:
    ci = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text())
    runs = " ".join(
        step.get("run", "") for job in ci["jobs"].values() for step in job.get("steps", [])
    )
    for command in ("ruff check", "ruff format --check", "mypy", "pytest"):
        assert command in runs, command
    test = ci["jobs"]["test"]
    assert "redis" in test["services"]
    assert "nats" in runs and "-c /etc/nats/nats.conf" in runs  # durable JetStream
    assert test["env"]["CHATBUS_TEST_NATS_URL"].startswith("nats://")
    assert test["env"]["CHATBUS_TEST_REDIS_URL"].startswith("redis://")
    # PyYAML reads the key `on` as True.
    assert "workflow_call" in ci[True], "deploy.yml reuses CI"


def test_deploy_workflow_deploys_each_service_with_the_token_from_secrets() -> None:
    text = (ROOT / ".github/workflows/deploy.yml").read_text()
    wf = yaml.safe_load(text)
    assert wf[True]["push"]["branches"] == ["main"]
    deploy = wf["jobs"]["deploy"]
    assert set(deploy["needs"]) == {"ci", "changes"}
    assert wf["jobs"]["ci"]["uses"] == "./.github/workflows/ci.yml"
    assert deploy["env"]["RAILWAY_TOKEN"] == "${{ secrets.RAILWAY_TOKEN }}"
    assert "railway up" in " ".join(s.get("run", "") for s in deploy["steps"])
    pick = wf["jobs"]["changes"]["steps"][-1]["run"]
    assert re.search(r'all="([^"]+)"', pick)[1].split() == list(BY_DIR)  # type: ignore[index]
    assert "shared/" in pick and "uv\\.lock" in pick, "shared/ and uv.lock redeploy everything"


def test_alerts_go_from_prometheus_through_alertmanager_to_the_webhook() -> None:
    """One alerting path: Prometheus rules fire, Alertmanager sends; the URL stays a secret."""
    prom = yaml.safe_load((PROM / "prometheus.yml").read_text())
    targets = [
        t
        for a in prom["alerting"]["alertmanagers"]
        for sc in a["static_configs"]
        for t in sc["targets"]
    ]
    assert targets == ["alertmanager:9093"]
    compose = load_compose()
    am = compose["services"]["alertmanager"]
    assert "9093:9093" in am["ports"]
    assert am["secrets"] == ["alert_webhook_url"]
    assert compose["secrets"]["alert_webhook_url"] == {"environment": "ALERT_WEBHOOK_URL"}
    config_dir = next(v.split(":")[1] for v in am["volumes"] if v.startswith("./infra/"))
    flag = next(a for a in am["command"] if a.startswith("--config.file="))
    assert flag.removeprefix("--config.file=").startswith(config_dir)
    config = yaml.safe_load((INFRA_DIR / "alertmanager" / "alertmanager.yml").read_text())
    receivers = {r["name"]: r for r in config["receivers"]}
    sender = receivers[config["route"]["receiver"]]["slack_configs"][0]
    assert sender["api_url_file"] == "/run/secrets/alert_webhook_url"
    assert "hooks" not in (INFRA_DIR / "alertmanager" / "alertmanager.yml").read_text().lower()
    # No service sends alerts itself any more: nothing reads the old settings.
    for svc in BY_DIR.values():
        assert not {"ALERT_WEBHOOK_URL", "ALERT_COOLDOWN_S"} & env_names(settings_class(svc))
    amtool = shutil.which("amtool")
    if amtool:
        done = subprocess.run(
            [amtool, "check-config", str(INFRA_DIR / "alertmanager" / "alertmanager.yml")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
