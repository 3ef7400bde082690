"""Write docs/api-reference.md from the backend's OpenAPI schema.

Run: .venv/bin/python scripts/gen_api_reference.py   (tests check the file is current)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "api-reference.md"


def _schema() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from mlpulse.backend.app import create_app
    from mlpulse.backend.config import BackendSettings

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(BackendSettings(data_dir=Path(tmp), api_token="reference"))  # noqa: S106
        schema: dict[str, Any] = app.openapi()
    return schema


def _type_of(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_type_of(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"array of {_type_of(schema.get('items', {}))}"
    return str(schema.get("type", "any"))


def render(schema: dict[str, Any]) -> str:
    """The markdown page for one OpenAPI schema."""
    out = [
        "# Backend API reference",
        "",
        "Generated from the backend's OpenAPI schema by `scripts/gen_api_reference.py`;",
        "do not edit by hand. Worked examples with curl are in [api.md](api.md). A running",
        "backend also serves this schema at `/openapi.json` and an explorer at `/docs`.",
        "",
        "Routes marked 🔒 need `Authorization: Bearer $MLPULSE_API_TOKEN`.",
        "",
    ]
    for path, item in sorted(schema.get("paths", {}).items()):
        for method, op in item.items():
            if method not in {"get", "post", "put", "delete", "patch"}:
                continue
            secured = method != "get" or path.startswith("/admin")
            lock = " 🔒" if secured else ""
            out.append(f"## `{method.upper()} {path}`{lock}")
            out.append("")
            summary = op.get("summary") or ""
            description = (op.get("description") or "").strip()
            if summary:
                out.append(summary + ".")
            if description and description != summary:
                out.append("")
                out.append(description)
            params = op.get("parameters", [])
            if params:
                out += [
                    "",
                    "| parameter | in | type | required | description |",
                    "|---|---|---|---|---|",
                ]
                for p in params:
                    desc = p.get("description") or p.get("schema", {}).get("description") or ""
                    desc = desc.replace("\n", " ").replace("|", "\\|")
                    out.append(
                        f"| `{p['name']}` | {p['in']} | {_type_of(p.get('schema', {}))} | "
                        f"{'yes' if p.get('required') else 'no'} | {desc} |"
                    )
            body = op.get("requestBody", {}).get("content", {})
            if body:
                kinds = ", ".join(
                    f"`{ctype}`" + (f" ({_type_of(c['schema'])})" if c.get("schema") else "")
                    for ctype, c in body.items()
                )
                out += ["", f"Body: {kinds}."]
            codes = ", ".join(sorted(op.get("responses", {})))
            if codes:
                out += ["", f"Responses: {codes}."]
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    text = render(_schema())
    if "--check" in sys.argv:
        current = TARGET.read_text() if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is stale: run python scripts/gen_api_reference.py")
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
