"""`POST /sessions` bodies checked as KATO's FastAPI model would, with pydantic v2's 422 details."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

_Errors = list[dict[str, Any]]


def parse_create_request(raw: bytes) -> tuple[dict[str, Any], _Errors]:
    """Validate a POST /sessions body as KATO's CreateSessionRequest model would."""
    if not raw:
        return {}, [_error("missing", ["body"], "Field required", None)]
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        error = _error("json_invalid", ["body", exc.pos], "JSON decode error", {})
        error["ctx"] = {"error": exc.msg}
        return {}, [error]
    if not isinstance(body, dict):
        msg = "Input should be a valid dictionary or object to extract fields from"
        return {}, [_error("model_attributes_type", ["body"], msg, body)]

    errors: _Errors = []
    if "node_id" not in body:
        errors.append(_error("missing", ["body", "node_id"], "Field required", body))
    elif not isinstance(body["node_id"], str):
        msg = "Input should be a valid string"
        errors.append(_error("string_type", ["body", "node_id"], msg, body["node_id"]))
    for name in ("metadata", "config"):
        value = body.get(name)
        if value is not None and not isinstance(value, dict):
            msg = "Input should be a valid dictionary"
            errors.append(_error("dict_type", ["body", name], msg, value))
    ttl, ttl_error = _lax_int(body.get("ttl_seconds"))
    if ttl_error is not None:
        errors.append(ttl_error)
    parsed = {
        "node_id": body.get("node_id"),
        "metadata": body.get("metadata"),
        "config": body.get("config"),
        "ttl_seconds": ttl,
    }
    return parsed, errors


def _lax_int(value: Any) -> tuple[int | None, dict[str, Any] | None]:
    """Coerce like pydantic's lax `int | None`: bools, whole floats and numeric strings pass."""
    loc = ["body", "ttl_seconds"]
    if value is None or isinstance(value, int):
        return (None if value is None else int(value)), None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None, _error("finite_number", loc, "Input should be a finite number", value)
        if not value.is_integer():
            msg = "Input should be a valid integer, got a number with a fractional part"
            return None, _error("int_from_float", loc, msg, value)
        return int(value), None
    if isinstance(value, str):
        try:
            return int(value.strip()), None
        except ValueError:
            msg = "Input should be a valid integer, unable to parse string as an integer"
            return None, _error("int_parsing", loc, msg, value)
    return None, _error("int_type", loc, "Input should be a valid integer", value)


def _error(kind: str, loc: Sequence[str | int], msg: str, value: Any) -> dict[str, Any]:
    return {"type": kind, "loc": list(loc), "msg": msg, "input": value}
