"""Why a consumer's handler failed, and what to do about it: retry, or dead-letter the record at once.

::

    Exception raised by a handler
    ├── transient: the infrastructure's (OSError, TimeoutError; SQLSTATE 08 connection, 40 serialization or
    │   deadlock, 53 resources, 57 operator intervention, 58 system; a connection invalidated; a driver error
    │   without SQLSTATE). Retried with backoff for as long as it lasts: the record is not at fault.
    ├── permanent: the record's (SQLSTATE 22 data exception, 23 integrity violation, a pydantic ValidationError,
    │   a UnicodeError). Retrying changes nothing: dead-lettered at once (an integrity violation after a second
    │   attempt, in case a concurrent writer won a race: see ``PERMANENT_ATTEMPTS``).
    └── anything else (a bug, a refusal of the handler's own): retried a few times, then dead-lettered.

``summary`` names a failure for a dead-letter header and a log line by its class and SQLSTATE only: exception
text may quote the record's content or the SQL parameters (asyncpg's ``invalid input for query argument $1:
'…'``), and neither belongs in a header anyone with access to the topic can read.
"""

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, StatementError

TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})
PERMANENT_SQLSTATE_CLASSES = {"22": "data_error", "23": "integrity_error"}
PERMANENT_ATTEMPTS = {"integrity_error": 2}
"""Attempts a permanent failure gets (1 when not named): a unique key already taken may be a concurrent writer's
check-then-insert race (two routers resolving one customer), which the second attempt finds committed."""


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error, if the driver gave one."""
    if not isinstance(exc, DBAPIError):
        return None
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return str(code) if code else None


def transient(exc: BaseException) -> bool:
    """Whether a handler failure is the infrastructure's, so that the same record may well succeed later."""
    if isinstance(exc, OSError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        code = sqlstate(exc)
        return code is None or code[:2] in TRANSIENT_SQLSTATE_CLASSES
    return False


def permanent(exc: BaseException) -> str | None:
    """The reason a failure will recur on every retry (``data_error``, ``integrity_error``, ``validation_error``,
    ``encoding_error``), or None when it might not."""
    if isinstance(exc, DBAPIError) and not exc.connection_invalidated:
        code = sqlstate(exc)
        return PERMANENT_SQLSTATE_CLASSES.get(code[:2]) if code else None
    cause = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc  # a bind parameter refused
    if isinstance(cause, ValidationError):
        return "validation_error"
    if isinstance(cause, UnicodeError):
        return "encoding_error"
    return None


def summary(exc: BaseException) -> str:
    """The failure by class and SQLSTATE, never its message: ``DBAPIError SQLSTATE 22021
    (CharacterNotInRepertoireError)``, ``ValidationError (string_too_long, missing)``, ``KeyError``."""
    name = type(exc).__name__
    if isinstance(exc, DBAPIError):
        driver = exc.orig.__cause__ if exc.orig is not None and exc.orig.__cause__ is not None else exc.orig
        code = sqlstate(exc)
        return f"{name}{f' SQLSTATE {code}' if code else ''} ({type(driver).__name__})"
    if isinstance(exc, StatementError) and exc.orig is not None:
        return f"{name} ({summary(exc.orig)})"
    if isinstance(exc, ValidationError):
        kinds = dict.fromkeys(error["type"] for error in exc.errors(include_url=False, include_input=False))
        return f"{name} of {exc.title} ({', '.join(kinds)})"
    return name
