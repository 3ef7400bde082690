"""The dashboard page: `dashboards/` served at `/`, plus the page's own settings.

The page is static (HTML, ES modules, CSS, the vendored uPlot); every response carries a
Content-Security-Policy that allows scripts, styles and connections from this origin only,
so even a label that slipped through as markup could not run.

Where the files are, first match wins:

1. the `dashboard_dir` setting (`MLPULSE_DASHBOARD_DIR`), for installs that keep the page
   elsewhere;
2. `dashboards/` next to the `backend` package (a source checkout or an editable install);
3. `<sys.prefix>/share/mlpulse/dashboards` (a wheel that ships the page as data files);
4. `./dashboards` in the working directory.

`GET /dashboard/config` tells the page what it cannot know by itself: the Jaeger UI base
URL for trace links (empty when none is configured) and the version.

`GET /dashboard/batch?get=metrics/current&get=health&...` answers several of the page's
read requests in one round trip (its first load: ~20 requests that would otherwise queue
on the browser's six connections to one origin). Each `get` is run through the app itself
with the caller's headers, so it answers exactly what its own GET would, errors included.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import mimetypes
import os
import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

log = logging.getLogger(__name__)

router = APIRouter(tags=["dashboard"])

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
"""No inline script, no eval, no third-party origin: data can only ever be text."""

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}


def _settings(request: Request) -> Any:
    """Return the app's settings object, or None when the app keeps none."""
    return getattr(request.app.state, "settings", None)


def _candidates(settings: Any) -> list[Path]:
    configured = getattr(settings, "dashboard_dir", None) or os.environ.get("MLPULSE_DASHBOARD_DIR")
    found: list[Path] = []
    if configured:
        found.append(Path(configured).expanduser())
    source_tree = Path(__file__).resolve().parents[4]  # mlpulse/backend/api/routes -> repo
    found.append(source_tree / "dashboards")
    found.append(Path(sys.prefix) / "share" / "mlpulse" / "dashboards")
    found.append(Path.cwd() / "dashboards")
    return found


def find_dashboard_dir(settings: Any = None) -> Path | None:
    """Return the folder holding the page's `index.html`, or None if there is none."""
    for candidate in _candidates(settings):
        if (candidate / "index.html").is_file():
            return candidate.resolve()
    return None


def _dashboard_dir(request: Request) -> Path:
    cached = getattr(request.app.state, "dashboard_dir", None)
    if isinstance(cached, Path):
        return cached
    found = find_dashboard_dir(_settings(request))
    if found is None:
        raise HTTPException(
            status_code=503,
            detail="dashboard files not found: set MLPULSE_DASHBOARD_DIR to the dashboards/ folder",
        )
    request.app.state.dashboard_dir = found
    return found


_FILES: dict[Path, tuple[int, int, bytes, str]] = {}
"""The page's files as served: path -> (mtime_ns, size, bytes, ETag). The page is a few
hundred KB; a changed file (same path, new mtime or size) is read again."""


def _file_response(request: Request, path: Path, *, cache: str) -> Response:
    """Serve a file of the page from memory, with an ETag (a 304 when the browser has it).

    A cold load asks for ~25 files at once; read from disk through the thread pool each
    costs several thread hops, and on a busy machine they came back in bursts ~100 ms late.
    From memory, in the event loop, each is a dictionary lookup and one `stat`.
    """
    st = path.stat()
    hit = _FILES.get(path)
    if hit is None or hit[0] != st.st_mtime_ns or hit[1] != st.st_size:
        etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
        hit = _FILES[path] = (st.st_mtime_ns, st.st_size, path.read_bytes(), etag)
    media_type = _TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    headers = {**SECURITY_HEADERS, "Cache-Control": cache, "ETag": hit[3]}
    if request.headers.get("if-none-match") == hit[3]:
        return Response(status_code=304, headers=headers)
    return Response(hit[2], media_type=media_type or "application/octet-stream", headers=headers)


@router.get("/", include_in_schema=False)
async def index(request: Request) -> Response:
    """Serve the dashboard page."""
    try:
        root = _dashboard_dir(request)
    except HTTPException as exc:
        return PlainTextResponse(str(exc.detail), status_code=exc.status_code)
    return _file_response(request, root / "index.html", cache="no-cache")


@functools.cache
def _version() -> str:
    """The installed mlpulse version (read once: the metadata lookup scans site-packages)."""
    try:
        from importlib.metadata import version

        return version("mlpulse")
    except Exception:  # not installed as a distribution
        return ""


@router.get("/dashboard/config", summary="Settings the dashboard page needs")
def dashboard_config(request: Request) -> JSONResponse:
    """Return the Jaeger UI base URL (empty when unset) and the backend version."""
    settings = _settings(request)
    if settings is None:
        from mlpulse.backend.config import BackendSettings

        settings = BackendSettings()
    jaeger = str(getattr(settings, "jaeger_ui_url", "") or "").strip().rstrip("/")
    if jaeger and not jaeger.startswith(("http://", "https://")):
        jaeger = ""  # only web links; never a javascript: or data: URL
    return JSONResponse(
        {"jaeger_ui_url": jaeger, "version": _version()},
        headers={"Cache-Control": "no-cache"},
    )


BATCH_MAX = 40
"""Requests per batch (a first load makes ~20)."""
BATCH_PATHS = frozenset(
    {
        "metrics/current",
        "metrics/history",
        "metrics/distribution",
        "metrics/exemplars",
        "metrics/services",
        "metrics/summary",
        "health",
        "alerts/configure",
        "alerts/silences",
        "alerts/active",
        "alerts/history",
        "annotations",
        "dashboard/config",
    }
)
"""The read routes a batch may ask for: the page's own first-load queries."""


def _batch_target(ref: str) -> tuple[str, str]:
    """Split one `get` into (path, query); HTTPException 400 unless it is a known read."""
    parts = urlsplit(ref)
    path = parts.path.lstrip("/")
    if parts.scheme or parts.netloc or parts.fragment or path not in BATCH_PATHS:
        raise HTTPException(
            status_code=400,
            detail=f"get: {ref[:200]!r} is not one of the batchable reads "
            f"({', '.join(sorted(BATCH_PATHS))})",
        )
    return path, parts.query


async def _sub_request(request: Request, path: str, query: str) -> tuple[int, bytes, str]:
    """Run `GET /path?query` through the app with the caller's headers: (status, body, type)."""
    scope = dict(request.scope)
    full = scope.get("root_path", "").rstrip("/") + "/" + path  # as the server would give it
    scope.update(
        path=full,
        raw_path=full.encode(),
        query_string=query.encode(),
        method="GET",
    )
    scope.pop("route", None)
    scope.pop("endpoint", None)
    scope.pop("path_params", None)
    status = 500
    chunks: list[bytes] = []
    content_type = ""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, content_type
        if message["type"] == "http.response.start":
            status = message["status"]
            for k, v in message.get("headers", []):
                if k.lower() == b"content-type":
                    content_type = v.decode("latin-1")
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await request.app(scope, receive, send)
    return status, b"".join(chunks), content_type


@router.get("/dashboard/batch", summary="Several read requests in one round trip")
async def dashboard_batch(
    request: Request,
    get: Annotated[
        list[str],
        Query(description="a read request, path and query, e.g. `metrics/current?service=a`"),
    ],
) -> Response:
    """Answer each `get` as its own GET would: `{"responses": [{"status", "body"}, ...]}`.

    The answers keep the order of the `get`s; a failed one carries its own status and
    error body, the others are unaffected. Only the page's read routes can be asked for.
    """
    if not get or len(get) > BATCH_MAX:
        raise HTTPException(status_code=400, detail=f"get: 1 to {BATCH_MAX} requests")
    targets = [_batch_target(ref) for ref in get]
    # Run together: the sync routes share the thread pool, so I/O waits overlap.
    answers = await asyncio.gather(*(_sub_request(request, p, q) for p, q in targets))
    # The bodies are JSON already: spliced in as they are, never decoded and re-encoded.
    parts = []
    for status, body, content_type in answers:
        if "json" in content_type and body:
            raw = body
        else:  # not JSON (a plain-text error): as a JSON string
            raw = json.dumps(body.decode("utf-8", "replace")).encode()
        parts.append(b'{"status":%d,"body":%s}' % (status, raw))
    return Response(
        b'{"responses":[' + b",".join(parts) + b"]}",
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _asset(request: Request, folder: str, path: str) -> Response:
    root = _dashboard_dir(request)
    base = (root / folder).resolve()
    try:
        target = (base / path).resolve()
        # Refuse anything that resolves outside the folder (.., symlinks out, absolute parts).
        found = target.is_relative_to(base) and target.is_file()
    except (ValueError, OSError):  # a NUL byte, a name too long, a loop: no such file
        found = False
    if not found:
        raise HTTPException(status_code=404, detail="not found")
    # Files change with a release, not while running: revalidate cheaply via ETag.
    return _file_response(request, target, cache="no-cache")


@router.get("/js/{path:path}", include_in_schema=False)
async def js_asset(request: Request, path: str) -> Response:
    """Serve the page's ES modules."""
    return _asset(request, "js", path)


@router.get("/css/{path:path}", include_in_schema=False)
async def css_asset(request: Request, path: str) -> Response:
    """Serve the page's stylesheet."""
    return _asset(request, "css", path)


@router.get("/vendor/{path:path}", include_in_schema=False)
async def vendor_asset(request: Request, path: str) -> Response:
    """Serve vendored libraries (uPlot)."""
    return _asset(request, "vendor", path)


@router.get("/img/{path:path}", include_in_schema=False)
async def img_asset(request: Request, path: str) -> Response:
    """Serve the page's images."""
    return _asset(request, "img", path)


__all__ = ["CONTENT_SECURITY_POLICY", "find_dashboard_dir", "router"]
