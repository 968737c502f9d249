"""Starting a service so that what stops it is an exception the ``kefu`` command can explain in one line.

uvicorn, left to itself, starts the app's lifespan and then binds its port: a port in use is found only
after the database and the broker were reached, and is logged as one more JSON line; a lifespan that
fails (no database) is logged as a traceback. Here the port is bound first (``listen``), and the
lifespan runs inside the server (``LifespanServer``) so that its exception leaves ``Server.run`` as
it is; ``tools.cli`` turns both into one line with a hint.
"""

import errno
import gc
import logging
import socket
from contextlib import AbstractAsyncContextManager
from typing import Any

import uvicorn
from starlette.applications import Starlette

log = logging.getLogger(__name__)


class PortInUse(OSError):
    """Another process listens on the service's port."""

    def __init__(self, host: str, port: int, setting: str) -> None:
        super().__init__(errno.EADDRINUSE, f"port {port} on {host} is in use")
        self.host = host
        self.port = port
        self.setting = setting


def listen(host: str, port: int, *, setting: str = "KEFU_PORT") -> socket.socket:
    """A TCP socket bound to ``host:port``, listening; ``PortInUse`` (naming ``setting``) if another process has it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(host, port, setting) from None
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class LifespanServer(uvicorn.Server):
    """A uvicorn server that runs the app's lifespan itself: startup before serving, shutdown after draining.

    A startup failure propagates out of ``run``; connections are drained before the lifespan's resources
    (consumers, producer, engine) stop, as uvicorn does.
    """

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        config.lifespan = "off"  # uvicorn's own lifespan would log the failure as a traceback and exit
        super().__init__(config)
        self._app = app
        self._lifespan: AbstractAsyncContextManager[Any] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        lifespan = self._app.router.lifespan_context(self._app)
        await lifespan.__aenter__()
        self._lifespan = lifespan
        # what the service loaded at start (the router's routing state: 500,000 waiting contacts at the largest
        # size) lives as long as the process: kept out of every garbage collection, as the imports are (tools.serve),
        # so that no full collection walks it while a request or a batch waits
        gc.collect()
        gc.freeze()
        gc.enable()  # a service's command keeps it off while the service starts (tools.cli)
        await super().startup(sockets=sockets)
        for sock in sockets or ():
            host, port = sock.getsockname()[:2]
            log.info("listening on http://%s:%d", host, port)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets=sockets)
        if self._lifespan is not None:
            lifespan, self._lifespan = self._lifespan, None
            await lifespan.__aexit__(None, None, None)
