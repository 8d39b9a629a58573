"""A tiny JSON-over-HTTP client on the standard library, for the demo, the CLI and the tests."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import orjson

DEMO_READER = "demo-auditor"
"""The token the demo's own readers send to the projections (``trialops up``, the simulation)."""
TOKEN_ENV = "TRIALOPS_TOKEN"
"""The bearer token the CLI's readers of the projections send (``trialops show``, ``status``)."""


def reader_token() -> str | None:
    return os.environ.get(TOKEN_ENV) or None


def call(
    method: str, url: str, body: Any = None, *, token: str | None = None, timeout: float = 30
) -> tuple[int, Any]:
    """Send a request; return ``(status, decoded JSON or None)``, 4xx/5xx included."""
    data = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    return status, (orjson.loads(raw) if raw else None)


def get_bytes(url: str, timeout: float = 30, *, token: str | None = None) -> bytes:
    """GET ``url``'s body; sends ``token``, else ``TRIALOPS_TOKEN`` if set, as a bearer token."""
    with urllib.request.urlopen(_request(url, token or reader_token()), timeout=timeout) as answer:
        return answer.read()


def _request(url: str, token: str | None) -> urllib.request.Request:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    return request


def wait_until_up(
    url: str,
    timeout: float = 90,
    what: str = "",
    still_starting: Callable[[], None] = lambda: None,
    *,
    token: str | None = None,
) -> None:
    """Poll ``url`` until it answers 2xx or 3xx (with ``token``, else ``TRIALOPS_TOKEN`` if set);
    ``still_starting`` may raise to give up early."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        still_starting()
        try:
            request = _request(url, token or reader_token())
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status < 500:
                    return
        except (OSError, urllib.error.URLError) as exc:
            last = exc
        time.sleep(0.3)
    raise TimeoutError(f"{what or url} did not answer within {timeout:.0f}s (last error: {last})")
