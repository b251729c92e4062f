"""Prometheus metrics every service shares, on the service's own registry.

Names follow Prometheus conventions (``_total`` counters, ``_seconds`` histograms) and pass
``promtool check metrics``. Services create one :class:`Metrics` per runtime registry.
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BY_REGISTRY: WeakKeyDictionary[CollectorRegistry, Metrics] = WeakKeyDictionary()

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """The standard chatbus metrics. Label values are bounded (agent ids, models, outcomes).

    There is one instance per registry: ``Metrics(rt.registry, ...)`` anywhere in a service
    returns the instance ``serve()`` already made.
    """

    def __new__(cls, registry: CollectorRegistry, service: str) -> Metrics:
        existing = _BY_REGISTRY.get(registry)
        if existing is not None:
            return existing
        made = super().__new__(cls)
        _BY_REGISTRY[registry] = made
        return made

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        if getattr(self, "service", None) is not None:
            return  # already built for this registry
        self.service = service
        self.messages = Counter(
            "chatbus_messages_total",
            "Chat messages handled, by agent and outcome",
            ["agent", "outcome"],
            registry=registry,
        )
        self.request_latency = Histogram(
            "chatbus_request_duration_seconds",
            "Time to answer a request, by route or agent",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.llm_latency = Histogram(
            "chatbus_llm_request_duration_seconds",
            "LLM call latency, by agent and model",
            ["agent", "model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.llm_errors = Counter(
            "chatbus_llm_errors_total",
            "Failed LLM calls, by model and kind",
            ["model", "kind"],
            registry=registry,
        )
        self.tokens = Counter(
            "chatbus_tokens_total",
            "Tokens used, by agent, model and kind (prompt/completion)",
            ["agent", "model", "kind"],
            registry=registry,
        )
        self.cost = Counter(
            "chatbus_cost_usd_total",
            "Cost in USD, by agent and model",
            ["agent", "model"],
            registry=registry,
        )
        self.cache = Counter(
            "chatbus_cache_requests_total",
            "Cache lookups, by cache and result (hit/miss)",
            ["cache", "result"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "chatbus_rate_limited_total",
            "Requests refused by a rate limit, by limit",
            ["limit"],
            registry=registry,
        )
        self.http_responses = Counter(
            "chatbus_http_responses_total",
            "HTTP responses, by route and status",
            ["route", "status"],
            registry=registry,
        )
        self.queue_pending = Gauge(
            "chatbus_queue_pending_messages",
            "Messages waiting in a JetStream consumer",
            ["consumer"],
            registry=registry,
        )
        self.redeliveries = Counter(
            "chatbus_redeliveries_total",
            "JetStream messages delivered more than once",
            ["consumer"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "chatbus_dead_letters_total",
            "Messages parked on the dead-letter stream",
            ["subject"],
            registry=registry,
        )
        self.budget_remaining = Gauge(
            "chatbus_budget_remaining_usd",
            "Budget left in the current period",
            ["scope", "period"],
            registry=registry,
        )
        self.handoffs = Counter(
            "chatbus_handoffs_total",
            "Conversations handed from one agent to another",
            ["from_agent", "to_agent"],
            registry=registry,
        )
