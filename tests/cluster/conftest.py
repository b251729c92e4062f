"""Cluster tests: several processes of each service on real NATS and Redis."""

from __future__ import annotations

from tests.gateway.conftest import agent

__all__ = ["agent"]
