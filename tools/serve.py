"""Run one service's ASGI app under uvicorn, with the project's logging and bounded requests.

Every service, and every test that serves an app over real sockets, builds its server with ``server_config``:
uvloop, and httptools behind ``kefu.bounded_http`` (head size and count, body size, head and body deadlines),
idle keep-alive connections closed after ``KEFU_IDLE_TIMEOUT_SECONDS``.
"""

import gc
from typing import Any

import uvicorn
from fastapi import FastAPI

from kefu.bounded_http import HttpLimits, bounded_protocol
from kefu.logs import configure, logging_config
from kefu.settings import ServiceSettings
from tools.startup import LifespanServer, listen


def http_limits(settings: ServiceSettings, *, max_body_bytes: int | None = None) -> HttpLimits:
    """The request limits ``settings`` set; ``max_body_bytes`` overrides the body limit (a larger route)."""
    return HttpLimits(
        max_header_bytes=settings.max_header_bytes,
        max_header_count=settings.max_header_count,
        max_body_bytes=max_body_bytes or settings.max_body_bytes,
        header_timeout=settings.header_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
    )


def server_config(
    app: Any, settings: ServiceSettings, *, max_body_bytes: int | None = None, **options: Any
) -> uvicorn.Config:
    """The uvicorn configuration of ``app`` on ``settings.host:port``; ``options`` are passed on to uvicorn."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=bounded_protocol(http_limits(settings, max_body_bytes=max_body_bytes)),
        ws="none",  # no service speaks WebSocket: an Upgrade is refused like any other unknown upgrade
        timeout_keep_alive=settings.idle_timeout_seconds,
        **{"access_log": False, "timeout_graceful_shutdown": 5, **options},
    )


def serve(app: FastAPI, settings: ServiceSettings, *, max_body_bytes: int | None = None) -> None:
    """Serve ``app`` until SIGINT/SIGTERM; ``max_body_bytes`` raises the body limit for a service that needs it."""
    configure(level=settings.log_level, json=settings.log_json)
    config = server_config(
        app,
        settings,
        max_body_bytes=max_body_bytes,
        log_config=logging_config(level=settings.log_level, json=settings.log_json),
    )
    # the app and its imports are long-lived: keep them out of every garbage collection (lower tail latency)
    gc.freeze()
    # the port first, then the lifespan inside the server: either failure leaves as an exception tools.cli explains
    LifespanServer(config, app).run(sockets=[listen(settings.host, settings.port)])
