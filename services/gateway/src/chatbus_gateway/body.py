"""Reading request bodies: size-capped, JSON, validated into a model, errors naming the field."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from chatbus_gateway.errors import ApiError

T = TypeVar("T", bound=BaseModel)


async def read_json(request: web.Request, max_bytes: int) -> Any:
    """The JSON body, refusing more than ``max_bytes`` (413) and anything but JSON (400)."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise ApiError(400, "the request body is empty; send a JSON object", param="body")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}", param="body") from e


async def read_model(request: web.Request, model: type[T], max_bytes: int) -> T:
    data = await read_json(request, max_bytes)
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object", param="body")
    return validate(model, data)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """``web.json_response`` with orjson (the hot path's answers)."""
    return web.Response(
        body=orjson.dumps(data), status=status, headers=headers, content_type="application/json"
    )


def validate(model: type[T], data: dict[str, Any]) -> T:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(422, f"{field}: {first['msg']}", param=field) from e


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413, f"the request body is larger than {max_bytes} bytes", type="request_too_large"
    )
