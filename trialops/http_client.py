"""A tiny JSON-over-HTTP client on the standard library, for the demo, the CLI and the tests."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import orjson


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


def get_bytes(url: str, timeout: float = 30) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def wait_until_up(
    url: str, timeout: float = 90, what: str = "", still_starting: Callable[[], None] = lambda: None
) -> None:
    """Poll ``url`` until it answers; ``still_starting`` may raise to give up early."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        still_starting()
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status < 500:
                    return
        except (OSError, urllib.error.URLError) as exc:
            last = exc
        time.sleep(0.3)
    raise TimeoutError(f"{what or url} did not answer within {timeout:.0f}s (last error: {last})")
