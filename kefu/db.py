"""PostgreSQL through SQLAlchemy's async engine and asyncpg.

Database errors carry no data: they are logged and copied into dead-letter reasons, so the text of every error an
engine raises names what failed (SQLSTATE, constraint, statement with placeholders) but no value. SQLAlchemy hides
the bound parameters (``hide_parameters``); ``_without_values`` takes out what PostgreSQL and asyncpg add: the
``DETAIL`` of a constraint violation (``Key (channel, platform_id)=(phone, +8613800138000) already exists``,
``Failing row contains (…)``), a value quoted in a data error (``invalid input syntax for type uuid: "…"``), and the
argument asyncpg could not encode (``invalid input for query argument $3: '你好…'``).
"""

import re

from sqlalchemy import MetaData, event, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError, EmulatedDBAPIException
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from kefu.outage import watch_engine

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def metadata(schema: str) -> MetaData:
    """Return a MetaData for one service's schema, with the project's naming convention."""
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def async_url(url: str) -> str:
    """Return ``url`` with the asyncpg driver, whatever driver (if any) it named."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"KEFU_DATABASE_URL must be a PostgreSQL URL, got {parsed.get_backend_name()!r}")
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """Create the service's engine; the caller disposes of it.

    No ``pool_pre_ping``: SQLAlchemy's asyncpg ping is three round trips (BEGIN, ``;``, ROLLBACK) before every
    transaction, as many as a consumer's whole batch or a relay pass takes. A connection the database dropped while
    pooled fails the one transaction that uses it, as a disconnect: the pool then replaces every connection older
    than that failure (one failure per outage, not per connection), and the failure is transient, so a consumer
    retries its record, a loop its pass, and a route answers 503 with ``Retry-After`` (``kefu.failures``,
    ``kefu.outage``).
    """
    engine = create_async_engine(async_url(url), pool_size=pool_size, hide_parameters=True)
    event.listen(engine.sync_engine, "handle_error", _without_values)
    watch_engine(engine)  # an outage is logged when it begins and when it ends, not at every failure
    return engine


_UNENCODABLE = re.compile(r"^(invalid input for query argument [^:]*): .*", re.DOTALL)
"""asyncpg's client-side error: ``…argument $N[ in element #i of executemany() sequence]: <repr> (<cause>)``."""
_QUOTED_VALUE = re.compile(r'(: |value )"[^"]*"')
"""A value PostgreSQL quotes in a data exception (SQLSTATE class 22); ``encoding "UTF8"`` and the like stay."""


def _without_values(context: ExceptionContext) -> None:
    """Take the values out of the driver's error, then out of the messages SQLAlchemy copied from it."""
    original = context.original_exception
    driver = original.orig if isinstance(original, EmulatedDBAPIException) and original.orig else original
    if not _scrubbed(driver):
        return
    if driver is not original:
        original.args = (driver.args[0],)
    wrapped = context.sqlalchemy_exception
    if isinstance(wrapped, DBAPIError) and wrapped.orig is original:
        wrapped.args = (f"({type(original).__module__}.{type(original).__name__}) {original}",)


def _scrubbed(driver: BaseException) -> bool:
    """Remove the values from ``driver`` (an asyncpg error); whether there were any."""
    if not driver.args or not isinstance(driver.args[0], str):
        return False
    message = driver.args[0]
    had_detail = getattr(driver, "detail", None) is not None
    if had_detail:
        driver.detail = None  # type: ignore[attr-defined]
    if (unencodable := _UNENCODABLE.match(message)) is not None:
        cause = type(driver.__cause__).__name__ if driver.__cause__ is not None else "unknown"
        message = f"{unencodable.group(1)}: value hidden ({cause})"
        # the encoder's own error may quote the value too (``invalid UUID '…'``)
        driver.__cause__ = None
        driver.__suppress_context__ = True
    elif str(getattr(driver, "sqlstate", "")).startswith("22"):
        message = _QUOTED_VALUE.sub(r'\1"***"', message)
    if message == driver.args[0]:
        return had_detail
    driver.args = (message, *driver.args[1:])
    return True


async def ping(engine: AsyncEngine) -> None:
    """Raise unless the database answers."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
