"""The services' OpenAPI document as one HTML page (``/docs``): every route with who may call
it, its body's fields and its answers. Rendered on the server from the document
(services/openapi.py): no script, no style sheet or font fetched from elsewhere."""

from __future__ import annotations

import html
from typing import Any

JSON = "application/json"


def page(doc: dict[str, Any]) -> str:
    """``doc`` as one HTML page: every route with who may call it, its body's fields and its
    answers. Server-rendered, no script, no style sheet from elsewhere."""
    out = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(doc['info']['title'])}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto;padding:1em}"
        "code{background:#f3f3f3}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}"
        "</style></head><body>",
        f"<h1>{_e(doc['info']['title'])} {_e(doc['info']['version'])}</h1>",
        f"<p>{_e(doc['info']['description'])}</p>",
        "<p>The machine-readable document: <a href='/openapi.json'><code>/openapi.json"
        "</code></a> (OpenAPI 3.1).</p>",
    ]
    # With several trials the commands sit under the document's server, /trials/{trial_id};
    # the routes with servers of their own keep the root.
    under = doc["servers"][0]["url"] if doc.get("servers") else ""
    for path, item in doc["paths"].items():
        prefix = "" if "servers" in item else under
        for method, op in item.items():
            if method == "servers":
                continue
            out.append(f"<h2 id='{_e(op['operationId'])}'><code>{method.upper()} "
                       f"{_e(prefix + path)}</code></h2>")
            out.append(f"<p><b>{_e(op['summary'])}</b></p>")
            for para in op.get("description", "").split("\n\n"):
                if para.strip():
                    out.append(f"<p>{_e(para)}</p>")
            body = op.get("requestBody", {}).get("content", {}).get(JSON, {}).get("schema")
            if body:
                out.append(_fields(body))
            codes = ", ".join(f"{code}" for code in op["responses"])
            out.append(f"<p>Answers: {codes}.</p>")
    out.append("</body></html>")
    return "".join(out)


def _fields(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    rows = ["<table><tr><th>field</th><th>required</th><th>type</th><th>about</th></tr>"]
    for name, field in schema.get("properties", {}).items():
        rows.append(
            f"<tr><td><code>{_e(name)}</code></td><td>{'yes' if name in required else ''}</td>"
            f"<td>{_e(_type(field))}</td><td>{_e(field.get('description', ''))}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _type(field: dict[str, Any]) -> str:
    if "$ref" in field:
        return str(field["$ref"]).rsplit("/", 1)[-1]
    if "const" in field:
        return repr(field["const"])
    if "enum" in field:
        return " | ".join(str(v) for v in field["enum"])
    for key in ("anyOf", "oneOf"):
        if key in field:
            return " | ".join(_type(f) for f in field[key])
    kind = str(field.get("type", "any"))
    if kind == "array" and isinstance(field.get("items"), dict):
        return f"array of {_type(field['items'])}"
    return kind + (f" ({field['format']})" if "format" in field else "")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
