"""Logging: one JSON object per line on stderr, for the service and for uvicorn alike.

Every line, JSON or text, comes out of ``_KefuFormat``:

* ``time`` is ISO 8601 in UTC with milliseconds (``2026-11-30T16:11:22.019Z``);
* the fields of the unit of work being done (``contact_id``, ``event_id``, ``agent_id``…, bound with
  ``log_context`` by the consumers and ``bind`` by the routes) are added to every record logged within it;
* secrets and personal data that third-party messages carry are cut from the finished line, whatever field or
  traceback they are in: URL query strings and fragments (DingTalk ``access_token``, WeCom ``key``) and user info,
  and the input values pydantic echoes in validation errors;
* uvicorn's ``color_message`` (ANSI colour codes) is dropped.

SQL parameters and row data never get into exception text in the first place (``kefu.db``).
"""

import contextlib
import logging.config
import re
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonEncoder, JsonFormatter

_context: ContextVar[dict[str, str] | None] = ContextVar("kefu_log_context", default=None)

FIELDS = ("contact_id", "event_id", "command_id", "agent_id", "case_id")
"""Ids a text line shows at its end when a record carries them (bound, or passed as ``extra=``)."""

_SCHEME = r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://"
_STOP = r"\s\"'<>\\`"
_URL_REDACTIONS = (
    # user:password@ in any URL (a database URL, a proxy)
    (re.compile(rf"({_SCHEME})[^{_STOP}/?#@]+@"), r"\1***@"),
    # the query string and fragment of any URL: where tokens and keys of webhook URLs travel
    (re.compile(rf"({_SCHEME}[^{_STOP}?#]*)[?#][^{_STOP}]*"), r"\1"),
)
# pydantic's ValidationError repeats the input it refused
_INPUT_VALUE = re.compile(r"input_value=.*?, input_type=")
_INPUT_VALUE_HIDDEN = "input_value=***, input_type="


def redact(text: str) -> str:
    """``text`` without URL query strings and user info, nor the inputs a validation error repeats.

    Every line passes here (an access line per request): the patterns run only on a line that has what each needs,
    ``://`` or ``input_value=``; scanning a line for a URL scheme at every word costs more than formatting it."""
    if "://" in text:
        for pattern, replacement in _URL_REDACTIONS:
            text = pattern.sub(replacement, text)
    if "input_value=" in text:
        text = _INPUT_VALUE.sub(_INPUT_VALUE_HIDDEN, text)
    return text


@contextlib.contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Within the block (one record, one request), every log line carries ``fields`` (those not None)."""
    token = _context.set({**(_context.get() or {}), **_strings(fields)})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: object) -> None:
    """Add ``fields`` to the current ``log_context``, for the rest of it (the code that opened it sees them too, and
    so do the threads and tasks it started); outside of one, nothing: a long-lived task must not keep ids forever."""
    current = _context.get()
    if current is not None:
        current.update(_strings(fields))


def fields_of(obj: object) -> dict[str, object]:
    """The ids among ``FIELDS`` that ``obj`` (an event, a command) carries."""
    return {name: value for name in FIELDS if (value := getattr(obj, name, None)) is not None}


def context_fields() -> dict[str, str]:
    """The fields bound now."""
    return dict(_context.get() or {})


def _strings(fields: dict[str, object]) -> dict[str, str]:
    return {name: str(value) for name, value in fields.items() if value is not None}


def _iso_utc(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _KefuFormat(logging.Formatter):
    """What both formats share: the time, the bound fields, the redaction."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return _iso_utc(record.created)

    def format(self, record: logging.LogRecord) -> str:
        for name, value in (_context.get() or {}).items():
            if not hasattr(record, name):  # an explicit extra= wins
                setattr(record, name, value)
        return redact(super().format(record))


JSON_OPTIONS: dict[str, Any] = {
    "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
    "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
    "reserved_attrs": [*RESERVED_ATTRS, "color_message"],
    "json_ensure_ascii": False,
}
"""python-json-logger's options of the JSON lines."""


class KefuJsonFormatter(_KefuFormat, JsonFormatter):
    """One JSON object per line: time, level, logger, message, the bound fields and any ``extra=``."""

    def __init__(self) -> None:
        super().__init__(**JSON_OPTIONS)
        self._encoder = JsonEncoder(ensure_ascii=False)  # what json.dumps(cls=JsonEncoder) would build per line

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        return self._encoder.encode(log_data)


class KefuTextFormatter(_KefuFormat):
    """``time level logger: message key=value…`` for a terminal; the bound fields at the end."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802
        names = dict.fromkeys([*FIELDS, *(_context.get() or {})])
        fields = "".join(f" {name}={getattr(record, name)}" for name in names if hasattr(record, name))
        return super().formatMessage(record) + fields


def logging_config(*, level: str, json: bool) -> dict[str, Any]:
    """Return a ``logging.config.dictConfig`` dict, also handed to uvicorn."""
    formatter = KefuJsonFormatter if json else KefuTextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"level": level.upper()},
            # one access line per request comes from ``kefu.access``, with the route's path template
            "uvicorn.access": {"level": "WARNING"},
            "aiokafka": {"level": "WARNING"},
            # httpx's one line per request stays (its URL cut at the query); httpcore's internals do not
            "httpcore": {"level": "WARNING"},
        },
    }


def configure(*, level: str, json: bool) -> None:
    """Configure the root logger."""
    logging.config.dictConfig(logging_config(level=level, json=json))
