"""The HTTP/1.1 protocol every kefu service runs under uvicorn: a request is bounded before any app sees it.

uvicorn's httptools protocol takes headers of any size and number (httptools gathers a header value in memory
until it ends), reads any body the app asks for, and waits for ever for a request head or body that never ends.
This subclass of it refuses, at the connection, before the ASGI app runs or while it waits for the body:

* a head (request line and headers) over ``max_header_bytes``, or more than ``max_header_count`` headers: 431;
* a body over ``max_body_bytes``: 413 at once when ``Content-Length`` says so, else as soon as the chunks add up;
* a head not complete ``header_timeout`` seconds after the connection opened or its first byte came: 408 (a
  connection that sent nothing at all is just closed);
* a body not complete ``body_timeout`` seconds after its head: 408 when no answer was started, else the
  connection is closed.

A refusal is the project's JSON error (``{"error", "detail"}``) with ``Connection: close``. Then the server
half-closes and, for a short linger, reads and drops what the client still sends, so that the client reads the
answer rather than a connection reset; then it closes. Idle keep-alive connections are closed by uvicorn
(``timeout_keep_alive``).
"""

import asyncio
import enum
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from prometheus_client import Counter
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger(__name__)

REFUSED = Counter(
    "kefu_http_refused_total",
    "Requests refused by the server before or while reading them, by reason",
    ["reason"],
)
LINGER_SECONDS = 2.0
"""How long a refused connection is drained before it is closed."""


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one request may cost the server: head size and count, body size, time to receive each."""

    max_header_bytes: int
    max_header_count: int
    max_body_bytes: int
    header_timeout: float
    body_timeout: float
    linger: float = LINGER_SECONDS


class _Phase(enum.Enum):
    IDLE = "idle"  # no request begun: a new connection, or between requests
    HEAD = "head"  # a request's first byte came, its head has not ended
    BODY = "body"  # the head ended, the body has not


def bounded_protocol(limits: HttpLimits) -> type[HttpToolsProtocol]:
    """The protocol class to hand to ``uvicorn.Config(http=...)``, enforcing ``limits``."""

    return type("Protocol", (BoundedHttpProtocol,), {"limits": limits})


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of the module docstring (``limits`` set by a subclass)."""

    limits: ClassVar[HttpLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = _Phase.IDLE
        self._refused = False
        self._received = False  # any byte on this connection yet
        self._head_bytes = 0  # of the current head: URL and the headers parsed so far
        self._raw_head_bytes = 0  # bytes received while the current head was open (at most one read over)
        self._header_count = 0
        self._body_bytes = 0
        self._timer: asyncio.TimerHandle | None = None  # the head or body deadline, whichever phase is on

    # --- connection ----------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: read and drop until the connection closes
        self._received = True
        super().data_received(data)
        if self._phase is _Phase.HEAD and not self._refused and not self.transport.is_closing():
            # httptools keeps a header that has not ended in memory: count what came while the head is open
            self._raw_head_bytes += len(data)
            if self._raw_head_bytes > self.limits.max_header_bytes:
                self._head_too_large()

    # --- parser callbacks ----------------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._refused:
            return
        self._phase = _Phase.HEAD
        self._head_bytes = self._raw_head_bytes = self._header_count = self._body_bytes = 0
        if self._timer is None:
            self._arm(self.limits.header_timeout, self._head_timed_out)
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if self._refused:
            return
        self._head_bytes += len(url)
        if self._head_bytes > self.limits.max_header_bytes:
            self._head_too_large()
            return
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        self._header_count += 1
        self._head_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._header_count > self.limits.max_header_count:
            count = self.limits.max_header_count
            self._refuse(431, "headers_too_large", f"more than {count} header fields", "too_many_headers")
            return
        if self._head_bytes > self.limits.max_header_bytes:
            self._head_too_large()
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        declared = _content_length(self.headers)
        if declared is not None and declared > self.limits.max_body_bytes:
            self._body_too_large(f"a body of {declared} bytes is over the limit of {self.limits.max_body_bytes}")
            return
        self._phase = _Phase.BODY
        self._arm(self.limits.body_timeout, self._body_timed_out)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.max_body_bytes:
            self._body_too_large(f"the body is over the limit of {self.limits.max_body_bytes} bytes")
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        self._phase = _Phase.IDLE
        super().on_message_complete()

    # --- refusals ------------------------------------------------------------------------------------------------

    def _head_too_large(self) -> None:
        self._refuse(431, "headers_too_large", f"the request head is over {self.limits.max_header_bytes} bytes")

    def _body_too_large(self, detail: str) -> None:
        self._refuse(413, "body_too_large", detail)

    def _head_timed_out(self) -> None:
        self._timer = None
        if not self._received:
            REFUSED.labels("silent_connection").inc()
            self.transport.close()  # a connection that never said anything gets no answer
            return
        seconds = f"{self.limits.header_timeout:g}"
        self._refuse(408, "request_timeout", f"the request head was not received within {seconds} s", "head_timeout")

    def _body_timed_out(self) -> None:
        self._timer = None
        seconds = f"{self.limits.body_timeout:g}"
        self._refuse(408, "request_timeout", f"the request body was not received within {seconds} s", "body_timeout")

    def _refuse(self, status: int, error: str, detail: str, reason: str | None = None) -> None:
        """Answer ``status`` if nothing else is being answered on this connection, then linger and close."""
        self._refused = True
        self._disarm()
        REFUSED.labels(reason or error).inc()
        log.debug("refused a request from %s: %s %s", self.client, status, detail)
        answer = self._may_answer()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # the app waiting for this body gets http.disconnect, and what it sends is dropped
            cycle.disconnected = True
            cycle.message_event.set()
        if self.transport.is_closing():
            return
        if not answer:
            self.transport.close()
            return
        self.transport.write(self._response(status, error, detail))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.flow.resume_reading()
        self.loop.call_later(self.limits.linger, self._close)

    def _may_answer(self) -> bool:
        """Whether a response may be written now without cutting into another one on this connection."""
        cycle = self.cycle
        if self._phase is _Phase.BODY:
            # the refused request's own cycle: started (not queued behind a pipelined one), not answered yet
            return cycle is not None and not self.pipeline and not cycle.response_started
        # a head being read: its cycle does not exist yet, so every earlier one must have been answered
        return cycle is None or cycle.response_complete

    def _response(self, status: int, error: str, detail: str) -> bytes:
        body = json.dumps({"error": error, "detail": detail}).encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        return b"".join(head) + body

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    # --- deadlines -----------------------------------------------------------------------------------------------

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length" and value.strip().isdigit():
            return int(value)
    return None
