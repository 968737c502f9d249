"""What the ``kefu`` command says when it cannot do what it was asked: one line, and what to do about it.

``explain`` knows the failures an operator meets (nothing listening where ``kefu demo`` posts, no
database or broker where a service looks, a database without kefu's tables, a port in use) and says
each with a hint; anything else is one line naming the error, with ``KEFU_DEBUG=1`` for its traceback.
"""

import httpx
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from kefu.failures import sqlstate
from kefu.outage import describe, unavailable
from tools.startup import PortInUse

DEBUG_VARIABLE = "KEFU_DEBUG"


def explain(exc: BaseException, command: str) -> str:
    """One line: what went wrong and what to do; it names the error when nothing more is known."""
    if isinstance(exc, PortInUse):
        return f"{exc.strerror} (another kefu, or another program): stop it, or choose another port with {exc.setting}"
    if isinstance(exc, httpx.TransportError):
        origin = exc.request.url.copy_with(path="/", query=None, fragment=None)
        return f"nothing answers at {origin} ({type(exc).__name__}): is `kefu dev` running? (or pass its URL)"
    if isinstance(exc, SQLAlchemyError):
        return _database(exc)
    if unavailable(exc) == "broker":
        where = _setting("kafka_bootstrap")
        return (
            f"cannot reach the Kafka broker at {where} ({describe(exc)}): is it running? "
            "Set KEFU_KAFKA_BOOTSTRAP, or use `kefu dev`, which starts one"
        )
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return f"invalid setting {where}: {first['msg']}{more}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}{f': {exc.filename}' if exc.filename else ''}"
    return f"unexpected error {type(exc).__name__}: {exc} (set {DEBUG_VARIABLE}=1 to see the traceback)"


def _database(exc: SQLAlchemyError) -> str:
    where = _database_url()
    code = sqlstate(exc) or ""
    if code == "3D000":
        return f"the database {where} does not exist: create it, then run `kefu migrate`"
    if code == "42P01":
        return f"the database {where} has no kefu tables: run `kefu migrate`"
    if code.startswith("28"):
        return f"the database {where} refused the login ({describe(exc)}): check the user and password"
    if unavailable(exc) == "database":
        return (
            f"cannot reach the database {where} ({describe(exc)}): is PostgreSQL running there? "
            "Set KEFU_DATABASE_URL, or use `kefu dev`, which starts one"
        )
    return f"the database {where} failed: {describe(exc)}"


def _database_url() -> str:
    try:
        url = make_url(_setting("database_url"))
    except ValueError:
        return "(KEFU_DATABASE_URL)"
    host = url.host or url.query.get("host", "localhost")
    return f"{url.database} at {host}:{url.port or 5432}"


def _setting(name: str) -> str:
    from kefu.settings import ServiceSettings

    try:
        return str(getattr(ServiceSettings(), name))
    except ValidationError:
        return f"(KEFU_{name.upper()})"
