"""Request bodies of the JSON routes: content type, size, JSON, and rows checked by the schema.

Each refusal is the status the API promises: 415 (not JSON), 413 (too large), 422 (malformed
or invalid, naming the field).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi import Request
from pydantic import ValidationError as PydanticValidationError

from pgmlops.api.errors import HTTPProblem, pydantic_errors
from pgmlops.domain.serving.served_fields import BOOLEAN_NOT_NUMBER, boolean_for_number
from pgmlops.errors import ValidationError
from pgmlops.services.serving.load import LoadedModel


def require_json(request: Request) -> None:
    """415 unless the Content-Type is application/json (parameters such as charset allowed).

    Also the dependency of the admin routes with a JSON body: FastAPI would parse a body sent
    with no Content-Type at all as JSON.
    """
    ctype = request.headers.get("content-type", "")
    # The exact media type: `application/jsonfoo` is not JSON.
    if ctype != "application/json" and ctype.split(";", 1)[0].strip().lower() != (
        "application/json"
    ):
        raise HTTPProblem(415, f"Content-Type must be application/json, got {ctype or 'none'!r}")


def require_json_if_body(request: Request) -> None:
    """require_json for a request that carries a body; a bodiless POST is left alone."""
    length = request.headers.get("content-length")
    if (length and length != "0") or "transfer-encoding" in request.headers:
        require_json(request)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing wrong content types (415), oversized (413) and empty bodies."""
    require_json(request)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit():
        if int(declared) > limit:
            raise HTTPProblem(413, f"body of {declared} bytes exceeds the limit of {limit} bytes")
        body = await request.body()
    else:
        # No declared length (chunked): count while reading so a huge body is cut off early.
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPProblem(413, f"body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
    if not body:
        raise HTTPProblem(422, "empty body: send a JSON object or a list of objects")
    return body


def parse_json(body: bytes) -> Any:
    """JSON, or a 422 saying where it is malformed."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            # orjson refuses NaN/Infinity outright; the stdlib reads them so that schema
            # validation can answer with the field that holds one.
            return json.loads(body)
        except (ValueError, RecursionError):
            raise HTTPProblem(422, f"malformed JSON: {exc}") from None


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON (415, 413 and 422 as in read_body and parse_json)."""
    return parse_json(await read_body(request, limit))


def validate_body(model: LoadedModel, body: bytes, max_batch: int) -> tuple[list[dict], bool]:
    """Rows and whether the request was a list; pydantic parses the bytes in one pass.

    Anything the one-pass parse refuses goes through orjson and `_validate` instead, which
    name the problem (malformed JSON, NaN, the field, the batch limit) as the API promises.
    """
    head = body[:64].lstrip()[:1]
    # pydantic's lax mode reads `true` as 1.0 for a number: a body with a JSON boolean in it
    # takes the slow path, where `_refuse_booleans` sees the values before conversion.
    if b"true" not in body and b"false" not in body:
        try:
            if head == b"{":
                return [model.single.validate_json(body).__dict__], False
            if head == b"[":
                rows = model.batch.validate_json(body)
                if 0 < len(rows) <= max_batch:
                    return [r.__dict__ for r in rows], True
        except PydanticValidationError:
            pass
    payload = parse_json(body)
    _refuse_booleans(model, payload)
    return _validate(model, payload, max_batch)


def _refuse_booleans(model: LoadedModel, payload: Any) -> None:
    """A boolean where the schema wants a number is bad input, not 0.0 or 1.0."""
    rows = payload if isinstance(payload, list) else [payload]
    found = boolean_for_number(model.card.feature_schema.numeric, rows)
    if found is not None:
        i, name = found
        loc = [i, name] if isinstance(payload, list) else [name]
        msg = BOOLEAN_NOT_NUMBER
        where = ".".join(map(str, loc))
        raise ValidationError(f"{where}: {msg}", [{"loc": loc, "msg": msg, "type": "bool"}])


def _validate(model: LoadedModel, payload: Any, max_batch: int) -> tuple[list[dict], bool]:
    """Rows as plain dicts and whether the request was a list."""
    try:
        if isinstance(payload, dict):
            return [model.single.validate_python(payload).__dict__], False
        if isinstance(payload, list):
            if not payload:
                raise ValidationError("empty list: send at least one record")
            if len(payload) > max_batch:
                raise HTTPProblem(
                    413, f"{len(payload)} records exceed the maximum batch of {max_batch}"
                )
            return [r.__dict__ for r in model.batch.validate_python(payload)], True
    except PydanticValidationError as exc:
        message, detail = pydantic_errors(exc.errors(include_url=False, include_input=False))
        raise ValidationError(message, detail) from None
    raise ValidationError("body must be a JSON object (one record) or a list of records")
