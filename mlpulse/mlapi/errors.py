"""A 422 that always renders: request validation errors with non-finite inputs.

Python's JSON parser accepts `NaN` and `Infinity`; pydantic refuses them, but its error
echoes the offending input, and FastAPI's default handler then fails to encode that
error as JSON (which has no NaN) and answers 500 instead of 422. This handler renders
non-finite numbers in the error as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`:

    app.add_exception_handler(RequestValidationError, request_validation_error)
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


def finite_json(node: Any) -> Any:
    """Return `node` with every non-finite float replaced by its JSON-ish name and bytes
    (a body that is not UTF-8) decoded with replacement characters."""
    if isinstance(node, float) and not math.isfinite(node):
        return "NaN" if math.isnan(node) else ("Infinity" if node > 0 else "-Infinity")
    if isinstance(node, bytes | bytearray):
        return bytes(node[:1024]).decode("utf-8", "replace")
    if isinstance(node, dict):
        return {key: finite_json(value) for key, value in node.items()}
    if isinstance(node, list | tuple):
        return [finite_json(value) for value in node]
    return node


async def request_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """Answer 422 with pydantic's errors, whatever inputs they echo."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else [{"msg": str(exc)}]
    return JSONResponse({"detail": jsonable_encoder(finite_json(errors))}, status_code=422)


__all__ = ["RequestValidationError", "finite_json", "request_validation_error"]
