"""Whether the database and the broker can be reached, as this process sees it, logged when that changes.

A request or a background loop that fails because PostgreSQL or Kafka cannot be reached does not log
the failure itself: ``unavailable`` names the dependency, the HTTP layer answers 503 with
``Retry-After``, loops retry quietly (``log_retry``), and the dependency's ``Availability`` logs one
line when it is lost and one when it is back. Failures are sorted like this::

    unavailable(exc) == "database"
    ├── sqlalchemy DBAPIError whose connection was lost, or SQLSTATE class 08 connection, 28 login,
    │   3D no such database, 53 resources, 57 operator intervention (shutdown), 58 system
    ├── sqlalchemy OperationalError without SQLSTATE (a refused, reset or timed-out connect; see watch_engine)
    └── sqlalchemy pool TimeoutError (no connection free in time)
    unavailable(exc) == "broker"
    └── aiokafka KafkaConnectionError, KafkaTimeoutError or any error it marks retriable
    None: anything else, a bug or bad data, which stays a 500 with its traceback
"""

import logging
import time
from typing import Any

from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from sqlalchemy import event
from sqlalchemy import exc as sa
from sqlalchemy.engine import Dialect, ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine

from kefu.failures import sqlstate

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 5.0
"""How long a new database connection may take (asyncpg waits 60 s by default): then the database is unavailable."""

# SQLSTATE classes that say the server cannot be reached or cannot serve now, not that the statement is wrong
_UNREACHABLE = {"08", "28", "3D", "53", "57", "58"}


class Availability:
    """One dependency as this process sees it: logs one line when it is lost and one when it is back."""

    def __init__(self, what: str, where: str) -> None:
        self.what = what
        self.where = where
        self._lost_at: float | None = None
        self.suppressed = 0

    @property
    def lost(self) -> bool:
        return self._lost_at is not None

    def down(self, reason: str) -> bool:
        """Note that the dependency failed; log it if it was up. Return whether this was news."""
        if self._lost_at is not None:
            self.suppressed += 1
            return False
        self._lost_at = time.monotonic()
        self.suppressed = 0
        log.warning("%s unavailable (%s): %s", self.what, self.where, reason)
        return True

    def up(self) -> None:
        """Note that the dependency answered; log it if it was down."""
        if self._lost_at is None:
            return
        log.info(
            "%s available again (%s) after %.1f s (%d more failures not logged)",
            self.what,
            self.where,
            time.monotonic() - self._lost_at,
            self.suppressed,
        )
        self._lost_at = None


def unavailable(exc: BaseException) -> str | None:
    """``"database"`` or ``"broker"`` when ``exc`` says that dependency cannot be reached now, else None."""
    if isinstance(exc, sa.TimeoutError):
        return "database"
    if isinstance(exc, sa.DBAPIError):
        code = sqlstate(exc)
        if exc.connection_invalidated or (code is not None and code[:2] in _UNREACHABLE):
            return "database"
        return "database" if code is None and isinstance(exc, sa.OperationalError) else None
    if isinstance(exc, KafkaConnectionError | KafkaTimeoutError) or (isinstance(exc, KafkaError) and exc.retriable):
        return "broker"
    return None


def describe(exc: BaseException) -> str:
    """The failure in a few words: its type and the driver's message, never a statement or its parameters."""
    orig = exc.orig if isinstance(exc, sa.DBAPIError) and exc.orig is not None else exc
    cause = orig.__cause__ or orig
    text = str(cause).strip().splitlines()[0][:200] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


def watch_engine(engine: AsyncEngine) -> Availability:
    """Track ``engine``'s database: lost when a connection breaks or cannot be made, back on the next connect.

    A connect that fails below the driver (refused, reset, unreachable host, no answer within
    ``CONNECT_TIMEOUT_SECONDS``) is raised as the driver's OperationalError, so that every connection
    failure is a sqlalchemy ``OperationalError``.
    """
    url = engine.url
    availability = Availability(
        "database", f"{url.host or url.query.get('host', '')}:{url.port or 5432}/{url.database}"
    )
    sync = engine.sync_engine

    @event.listens_for(sync, "do_connect")
    def connect(dialect: Dialect, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> Any:
        cparams.setdefault("timeout", CONNECT_TIMEOUT_SECONDS)
        try:
            return dialect.connect(*cargs, **cparams)
        except OSError as exc:  # TimeoutError included
            raise dialect.loaded_dbapi.OperationalError(describe(exc), exc) from exc

    @event.listens_for(sync, "handle_error")
    def failed(context: ExceptionContext) -> None:
        # engines run without pool_pre_ping (kefu.db): a pooled connection the database dropped fails the one
        # transaction that uses it, as a disconnect, and counts (the pool then replaces every older connection). An
        # engine given a pre-ping replaces such a connection at once: there only a failed replacement counts.
        # A cancelled statement (a task stopped at shutdown) drops its connection, but the database is fine.
        if context.is_pre_ping or not isinstance(context.original_exception, Exception):
            return
        exc = context.sqlalchemy_exception
        if context.is_disconnect or (exc is not None and unavailable(exc) == "database"):
            availability.down(describe(exc or context.original_exception))

    @event.listens_for(sync, "connect")
    def connected(_dbapi_connection: Any, _record: Any) -> None:
        availability.up()

    return availability


def log_retry(logger: logging.Logger, exc: BaseException, message: str, *args: object) -> None:
    """Log ``exc``, which a loop will retry after.

    An unreachable database or broker is logged at DEBUG without traceback (its ``Availability`` logs the
    outage once); anything else at ERROR with its traceback.
    """
    if unavailable(exc) is not None:
        logger.debug("%s (%s)", message % args, describe(exc))
    else:
        logger.error(message, *args, exc_info=exc)
