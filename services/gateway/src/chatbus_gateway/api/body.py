"""Reading request bodies: size-capped, JSON, validated into a model, errors naming the field.

Every route that takes a body reads it here, so every route has the same answers to hostile
input: 413 past ``max_bytes`` (also for chunked bodies of unknown length), 400 for anything but
JSON (invalid UTF-8, lone surrogates, NaN, nesting deeper than ``MAX_DEPTH``), 422 for a field
that breaks the model. Nothing a client sends reaches a 5xx from here.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from chatbus_gateway.api.errors import ApiError

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
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}", param="body") from e
    if not _shallow(data, MAX_DEPTH):
        raise ApiError(400, f"the request body nests deeper than {MAX_DEPTH} levels", param="body")
    return data


# Deeper than any body the API takes; far below what would exhaust a recursive validator.
MAX_DEPTH = 32


def _shallow(data: Any, limit: int) -> bool:
    """Whether ``data`` nests at most ``limit`` containers deep (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return True


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
        raise invalid(e) from e


def invalid(e: ValidationError) -> ApiError:
    """422 naming the first bad field (never echoing its value: it may be a secret)."""
    first = e.errors(include_input=False, include_url=False)[0]
    field = ".".join(str(p) for p in first["loc"])[:200] or "body"
    return ApiError(422, f"{field}: {first['msg']}", param=field)


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413, f"the request body is larger than {max_bytes} bytes", type="request_too_large"
    )
