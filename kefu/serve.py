"""Run one service's ASGI app under uvicorn, with the project's logging."""

import gc

import uvicorn
from fastapi import FastAPI

from kefu.logs import configure, logging_config
from kefu.settings import ServiceSettings


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Serve ``app`` until SIGINT/SIGTERM (uvloop and httptools when installed)."""
    configure(level=settings.log_level, json=settings.log_json)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=logging_config(level=settings.log_level, json=settings.log_json),
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    # the app and its imports are long-lived: keep them out of every garbage collection (lower tail latency)
    gc.freeze()
    uvicorn.Server(config).run()
