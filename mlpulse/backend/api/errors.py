"""A 422 that always renders: request validation errors with non-finite inputs.

Python's JSON parser accepts `NaN` and `Infinity`; pydantic refuses them where a finite
number is due, but its error echoes the input, and FastAPI's default handler then fails
to encode that error as JSON (which has no NaN): a 500 instead of the 422. This handler
renders non-finite numbers in the error as the strings `"NaN"`, `"Infinity"`,
`"-Infinity"` (mlapi has the same handler: the two packages never import each other):

    app.add_exception_handler(RequestValidationError, request_validation_error)
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

__all__ = ["RequestValidationError", "finite_json", "request_validation_error"]


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


async def unstorable_text(_request: Request, exc: Exception) -> JSONResponse:
    """Answer 422 when PostgreSQL refuses a value (a NUL byte in text): the request's
    input, never a 500. SQLite stores such text; PostgreSQL's text type cannot."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return JSONResponse({"detail": f"value cannot be stored: {first}"}, status_code=422)
