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
"""

from __future__ import annotations

import logging
import mimetypes
import os
import sys
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response

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


def _file_response(path: Path, *, cache: str) -> Response:
    media_type = _TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    return FileResponse(
        path,
        media_type=media_type or "application/octet-stream",
        headers={**SECURITY_HEADERS, "Cache-Control": cache},
    )


@router.get("/", include_in_schema=False)
def index(request: Request) -> Response:
    """Serve the dashboard page."""
    try:
        root = _dashboard_dir(request)
    except HTTPException as exc:
        return PlainTextResponse(str(exc.detail), status_code=exc.status_code)
    return _file_response(root / "index.html", cache="no-cache")


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
    try:
        from importlib.metadata import version

        mlpulse_version = version("mlpulse")
    except Exception:  # not installed as a distribution
        mlpulse_version = ""
    return JSONResponse(
        {"jaeger_ui_url": jaeger, "version": mlpulse_version},
        headers={"Cache-Control": "no-cache"},
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
    return _file_response(target, cache="no-cache")


@router.get("/js/{path:path}", include_in_schema=False)
def js_asset(request: Request, path: str) -> Response:
    """Serve the page's ES modules."""
    return _asset(request, "js", path)


@router.get("/css/{path:path}", include_in_schema=False)
def css_asset(request: Request, path: str) -> Response:
    """Serve the page's stylesheet."""
    return _asset(request, "css", path)


@router.get("/vendor/{path:path}", include_in_schema=False)
def vendor_asset(request: Request, path: str) -> Response:
    """Serve vendored libraries (uPlot)."""
    return _asset(request, "vendor", path)


@router.get("/img/{path:path}", include_in_schema=False)
def img_asset(request: Request, path: str) -> Response:
    """Serve the page's images."""
    return _asset(request, "img", path)


__all__ = ["CONTENT_SECURITY_POLICY", "find_dashboard_dir", "router"]
