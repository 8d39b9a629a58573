"""Runs the command services' aiohttp application.

aiohttp answers a request it cannot parse (a control character in a header value, a line too
long) by itself, before any middleware runs: 400 with a plain-text body that quotes the
offending header line, and an error log record that quotes it again. With a malformed
``Authorization`` header that line is the bearer token. Here such a request is answered in
the API's JSON error format, and the log names only the kind of error; an error raised by a
handler is answered in JSON too (its traceback stays in the log, as before).

Each request's access log record carries its correlation id (``CorrelatedAccessLog``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from infra.logs import correlated
from services.correlation import REQUEST_ID
from services.problems import PROBLEM_JSON, problem_document


class CorrelatedAccessLog(AbstractAccessLogger):
    """One record per request: method, path (never the query), status and time taken, with
    the answer's ``X-Request-ID`` as its ``correlation_id`` (aiohttp logs access after the
    middlewares have returned, outside the request's logging context). No header is logged."""

    def log(self, request, response, time: float) -> None:
        line = ('%s "%s %s" %s %.1f ms', request.remote, request.method, request.path,
                response.status, time * 1000)
        correlation = response.headers.get(REQUEST_ID)
        if correlation is None:
            self.logger.info(*line)
            return
        with correlated(correlation):
            self.logger.info(*line)


class _JsonErrors(RequestHandler):
    def handle_error(self, request, status=500, exc=None, message=None):
        if isinstance(exc, HttpProcessingError):
            self.logger.warning(
                "refused an unparseable request from %s (%s); its content is not logged",
                request.remote,
                type(exc).__name__,
            )
            return _json(
                status,
                "malformed-request",
                "the request is not valid HTTP (for example a control character in a header "
                "value); its content is not repeated here",
            )
        answer = super().handle_error(request, status, exc, message)
        return _json(
            answer.status, "internal-error", "the server failed to handle the request",
            request.path,
        )


def _json(status: int, error: str, message: str, instance: str | None = None) -> web.Response:
    # No middleware runs here: the answer is built whole, in the API's problem format.
    document = problem_document(status, error, message, instance)
    response = web.Response(status=status, body=orjson.dumps(document), content_type=PROBLEM_JSON)
    response.force_close()
    return response


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrors(self, loop=self._loop, **self._kwargs)


class ServiceRunner(web.AppRunner):
    """An ``AppRunner`` whose connections answer unparseable requests as described above."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server
        return server


def run(app: web.Application, *, host: str, port: int, say: Callable[[str], None]) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, as ``web.run_app`` does, with ``ServiceRunner``."""
    with contextlib.suppress(web.GracefulExit, KeyboardInterrupt):
        asyncio.run(_serve(app, host, port, say))


async def _serve(app: web.Application, host: str, port: int, say: Callable[[str], None]):
    runner = ServiceRunner(app, handle_signals=True, keepalive_timeout=75,
                           access_log_class=CorrelatedAccessLog)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        say(f"running on {site.name} (Press CTRL+C to quit)")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
