"""One access log line per HTTP request, in place of uvicorn's: method, path template, status, duration.

The path is the route's template (``/v1/offers/{offer_id}/accept``), so ids, tokens and addresses in paths stay
out of the log, and lines group by endpoint; ids a route names (``contact_id``, ``agent_id``…) become fields. Each
request is one ``log_context``: whatever is logged while serving it carries the fields bound so far (the caller's
``agent_id``, bound by ``kefu.auth``). Probes of ``/healthz``, ``/readyz`` and ``/metrics`` that succeed are logged
at DEBUG, so that a scraper every few seconds does not drown the rest.
"""

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kefu.logs import FIELDS, bind, log_context

log = logging.getLogger("kefu.access")

PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
MAX_UNMATCHED_PATH = 200
LINE = "%s %s %d %.1fms"


class AccessLog:
    """ASGI middleware writing the access line of every HTTP request once it is answered (or failed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # what the server answers when the app fails before answering
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with log_context():
            try:
                await self.app(scope, receive, send_noting_status)
            finally:
                _log(scope, status, (time.perf_counter() - started) * 1000)


def path_template(scope: Scope) -> str:
    """The template of the route that served ``scope``; the path itself (cut short) when none matched."""
    route = scope.get("route") or _route_of(scope)
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if isinstance(template, str):
        return template
    return str(scope.get("path", ""))[:MAX_UNMATCHED_PATH]


def _route_of(scope: Scope) -> object | None:
    """The route whose endpoint served ``scope``: FastAPI names only its own routes in the scope, not the plain
    Starlette routes put in front (the channels' fast path)."""
    endpoint = scope.get("endpoint")
    routes = getattr(getattr(scope.get("app"), "router", None), "routes", ())
    return next((r for r in routes if endpoint is not None and getattr(r, "endpoint", None) is endpoint), None)


def _log(scope: Scope, status: int, duration_ms: float) -> None:
    params = scope.get("path_params") or {}
    bind(**{name: value for name, value in params.items() if name in FIELDS})
    path = path_template(scope)
    level = logging.DEBUG if path in PROBES and status < 400 else logging.INFO
    if not log.isEnabledFor(level):
        return
    method = scope["method"]
    fields = {"method": method, "path": path, "status": status, "duration_ms": round(duration_ms, 1)}
    # the record made here, not by log.log(): that walks the stack for the caller's file and line, which no line shows
    record = log.makeRecord(log.name, level, __file__, 0, LINE, (method, path, status, duration_ms), None, extra=fields)
    log.handle(record)
