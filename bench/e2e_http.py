"""A small HTTP/1.1 client for ``bench.e2e``: keep-alive connections on asyncio streams, prebuilt requests, and
Server-Sent Events over chunked responses.

httpx costs a few hundred microseconds of CPU a request; the load generator has to send 1,000 a second on a
machine whose two cores also run the services, so requests are written as prebuilt bytes and answers are read
with no more parsing than the status, the length and the connection header.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

READ_LIMIT = 1 << 20


class HttpError(Exception):
    """The connection failed or the answer was not HTTP/1.1 as expected."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


def build(method: str, host: str, path: str, headers: Mapping[str, str], body: bytes = b"") -> bytes:
    """The bytes of one request (keep-alive)."""
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() not in ("host", "content-length")]
    if body or method in ("POST", "PUT"):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def _head(raw: bytes) -> tuple[int, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise HttpError(f"not an HTTP/1.1 answer: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The chunks of a chunked body, until the last."""
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers are sent by uvicorn
            return
        chunk = await reader.readexactly(size + 2)
        yield chunk[:-2]


class Connection:
    """One keep-alive connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.open = True
        self.used = time.monotonic()

    @classmethod
    async def connect(cls, host: str, port: int) -> "Connection":
        reader, writer = await asyncio.open_connection(host, port, limit=READ_LIMIT)
        return cls(reader, writer)

    async def send(self, request: bytes) -> Answer:
        """Send ``request`` and read its answer; afterwards ``open`` says whether the connection may be reused."""
        self.writer.write(request)
        status, headers = _head(await self.reader.readuntil(b"\r\n\r\n"))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b"".join([chunk async for chunk in _chunks(self.reader)])
        else:
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        self.used = time.monotonic()
        return Answer(status, body)

    def close(self) -> None:
        self.open = False
        self.writer.close()


class Pool:
    """At most ``size`` keep-alive connections to ``host:port``; a request waits for a free one. A connection idle
    for ``max_idle`` seconds is not reused (the services close theirs after ``KEFU_IDLE_TIMEOUT_SECONDS``, 5)."""

    def __init__(self, host: str, port: int, size: int, *, max_idle: float = 3.0) -> None:
        self.host, self.port, self.max_idle = host, port, max_idle
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(size)

    def _reusable(self) -> Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if time.monotonic() - connection.used < self.max_idle:
                return connection
            connection.close()
        return None

    async def send(self, request: bytes, *, timeout: float = 30.0) -> Answer:
        """Send prebuilt ``request``; one retry on a fresh connection when a kept-alive one was closed meanwhile."""
        async with self._slots:
            for attempt in (0, 1):
                connection = self._reusable() if attempt == 0 else None
                reused = connection is not None
                if connection is None:
                    connection = await asyncio.wait_for(Connection.connect(self.host, self.port), timeout)
                try:
                    answer = await asyncio.wait_for(connection.send(request), timeout)
                except TimeoutError:  # no answer in time: not sent again
                    connection.close()
                    raise
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, HttpError):
                    connection.close()
                    if reused:
                        continue
                    raise
                except BaseException:
                    connection.close()
                    raise
                if connection.open:
                    self._idle.append(connection)
                return answer
        raise AssertionError("unreachable")

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


@dataclass(frozen=True)
class Event:
    name: str
    data: str


async def events(
    host: str, port: int, path: str, headers: Mapping[str, str], on_open: Callable[[], None] | None = None
) -> AsyncIterator[Event]:
    """The Server-Sent Events of ``GET path`` until the server ends the stream (comments are skipped); ``on_open``
    is called once the stream's 200 has arrived."""
    connection = await Connection.connect(host, port)
    try:
        request = build("GET", f"{host}:{port}", path, {**headers, "accept": "text/event-stream"})
        connection.writer.write(request)
        status, answer_headers = _head(await connection.reader.readuntil(b"\r\n\r\n"))
        if status != 200:
            raise HttpError(f"GET {path}: {status}")
        if answer_headers.get("transfer-encoding", "").lower() != "chunked":
            raise HttpError(f"GET {path}: the event stream is not chunked")
        if on_open is not None:
            on_open()
        buffer = b""
        async for chunk in _chunks(connection.reader):
            buffer = (buffer + chunk).replace(b"\r\n", b"\n")
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                name, data = "message", []
                for line in block.decode("utf-8").split("\n"):
                    field, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if field == "event":
                        name = value
                    elif field == "data":
                        data.append(value)
                if data:
                    yield Event(name, "\n".join(data))
    finally:
        with contextlib.suppress(Exception):
            connection.close()
