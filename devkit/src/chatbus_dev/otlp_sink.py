"""A minimal OTLP/HTTP trace receiver, to see spans without Jaeger (tests, local debugging).

``python -m chatbus_dev.otlp_sink PORT`` prints one line per span; tests embed :class:`SpanSink`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, object]


def _value(v: Any) -> object:
    kind = v.WhichOneof("value") or "string_value"
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind)


@dataclass
class SpanSink:
    spans: list[ReceivedSpan] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/v1/traces", self.receive)
        return app

    async def receive(self, request: web.Request) -> web.Response:
        req = ExportTraceServiceRequest()
        req.ParseFromString(await request.read())
        new: list[ReceivedSpan] = []
        for rs in req.resource_spans:
            service = next(
                (a.value.string_value for a in rs.resource.attributes if a.key == "service.name"),
                "",
            )
            for ss in rs.scope_spans:
                for s in ss.spans:
                    attrs: dict[str, object] = {}
                    for a in s.attributes:
                        attrs[a.key] = _value(a.value)
                    new.append(
                        ReceivedSpan(
                            service,
                            s.name,
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                            attrs,
                        )
                    )
        async with self.arrived:
            self.spans.extend(new)
            self.arrived.notify_all()
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.trace_id == trace_id]


def main() -> None:
    import sys

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 4318
    sink = SpanSink()

    async def printing(request: web.Request) -> web.Response:
        before = len(sink.spans)
        resp = await sink.receive(request)
        for s in sink.spans[before:]:
            print(f"{s.trace_id[:8]} {s.service:<16} {s.name}", flush=True)  # noqa: T201
        return resp

    app = web.Application()
    app.router.add_post("/v1/traces", printing)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main()
