"""The agent runtime's Redis key space: every key it writes starts with :data:`REDIS_PREFIX`.

All agent services are one owner (history, routes, records, drafts, customer notes,
model-step results, the response cache). Nobody else touches these keys: other services ask
over the bus (``records.*.v1``, forget events), and in the end-to-end tests the agents connect
as a Redis ACL user limited to ``agent:*``.
"""

from __future__ import annotations

REDIS_PREFIX = "agent:"
