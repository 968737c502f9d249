"""The shared logging setup: ISO 8601 UTC times, no colour codes, the ids of the work at hand as fields, and no
secret or personal data, whatever field or traceback a third party puts it in."""

import asyncio
import logging
import re
import sys
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import BaseModel, ValidationError
from pythonjsonlogger.json import JsonFormatter

from kefu.logs import JSON_OPTIONS, KefuJsonFormatter, bind, fields_of, log_context, redact
from tests.logcapture import lines, service_logs

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TOKEN = "c3VwZXItc2VjcmV0LWRpbmd0YWxr"
KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
PHONE = "+8613800138000"

log = logging.getLogger("tests.unit.test_logs")


def test_a_json_line_has_an_iso_8601_utc_time_and_plain_names() -> None:
    with service_logs() as out:
        log.warning("disk %s is %d%% full", "/data", 91)
    (line,) = lines(out)
    assert ISO_UTC.match(line["time"]), line["time"]
    assert (line["level"], line["logger"], line["message"]) == ("WARNING", log.name, "disk /data is 91% full")


def test_a_text_line_has_the_same_time_and_the_ids_at_the_end() -> None:
    with service_logs(json_lines=False) as out, log_context(contact_id="c-1", agent_id="alice"):
        log.info("offered")
    time, rest = out.getvalue().rstrip("\n").split(" ", 1)
    assert ISO_UTC.match(time)
    assert rest == f"INFO    {log.name}: offered contact_id=c-1 agent_id=alice"


def test_uvicorns_colour_codes_are_dropped() -> None:
    with service_logs() as out:
        logging.getLogger("uvicorn.error").info(
            "Uvicorn running on %s", "http://127.0.0.1:8000", extra={"color_message": "running on \x1b[1m%s\x1b[0m"}
        )
    assert "\x1b" not in out.getvalue() and "\\u001b" not in out.getvalue()
    (line,) = lines(out)
    assert "color_message" not in line and line["message"] == "Uvicorn running on http://127.0.0.1:8000"


@pytest.mark.parametrize(
    "url",
    [
        f"https://oapi.dingtalk.com/robot/send?access_token={TOKEN}",
        f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}&debug=1",
        f"http://127.0.0.1:8080/hooks?a=1&access_token={TOKEN}#frag",
    ],
)
def test_httpx_request_lines_keep_the_url_without_its_query(url: str) -> None:
    with service_logs() as out:
        # exactly what httpx logs for every request it sends
        logging.getLogger("httpx").info('HTTP Request: %s %s "%s %d %s"', "POST", httpx.URL(url), "HTTP/1.1", 200, "OK")
    (line,) = lines(out)
    assert TOKEN not in out.getvalue() and KEY not in out.getvalue()
    assert line["message"].startswith(f"HTTP Request: POST {url.split('?')[0]} ")


def test_a_url_in_an_exception_loses_its_query_and_a_database_url_its_password() -> None:
    request = httpx.Request("POST", f"https://oapi.dingtalk.com/robot/send?access_token={TOKEN}")
    response = httpx.Response(404, request=request)
    with service_logs() as out:
        try:
            response.raise_for_status()
        except httpx.HTTPStatusError:
            log.exception("notification failed")
        log.error("cannot reach %s", "postgresql+asyncpg://kefu:s3cr3t-pw@db:5432/kefu")
    text = out.getvalue()
    assert TOKEN not in text and "s3cr3t-pw" not in text
    first, second = lines(out)
    assert "https://oapi.dingtalk.com/robot/send" in first["exc_info"]
    assert second["message"] == "cannot reach postgresql+asyncpg://***@db:5432/kefu"


def test_a_validation_error_logged_does_not_repeat_its_input() -> None:
    class Identity(BaseModel):
        platform_id: int

    with service_logs() as out:
        try:
            Identity.model_validate({"platform_id": f"phone {PHONE}"})
        except ValidationError:
            log.exception("cannot link")
    assert PHONE not in out.getvalue()
    assert "input_value=***" in lines(out)[0]["exc_info"]


def test_fields_bound_for_a_unit_of_work_are_on_every_line_within_it_and_only_there() -> None:
    with service_logs() as out:
        with log_context(event_id="e-1"):
            log.info("applying")
            bind(contact_id="c-1", agent_id=None)
            log.info("applied", extra={"event_id": "explicit"})
        bind(contact_id="c-2")
        log.info("idle")
    applying, applied, idle = lines(out)
    assert (applying["event_id"], "contact_id" in applying) == ("e-1", False)
    assert (applied["event_id"], applied["contact_id"], "agent_id" in applied) == ("explicit", "c-1", False)
    assert not {"event_id", "contact_id"} & set(idle)


async def test_fields_bound_in_a_thread_or_a_task_of_the_unit_of_work_reach_its_lines() -> None:
    with service_logs() as out, log_context():
        await asyncio.to_thread(bind, agent_id="alice")
        await asyncio.create_task(_bind_contact())
        log.info("answered")
    (line,) = lines(out)
    assert (line["agent_id"], line["contact_id"]) == ("alice", "c-9")


async def _bind_contact() -> None:
    bind(contact_id="c-9")


def test_fields_of_an_event_are_its_ids() -> None:
    class Event(BaseModel):
        event_id: str = "e"
        contact_id: str = "c"
        agent_id: str | None = None
        text: str = "secret"

    assert fields_of(Event()) == {"event_id": "e", "contact_id": "c"}


def test_redact_leaves_ordinary_text_alone() -> None:
    text = 'routing state loaded: 3 agents; queue "presales" at https://kefu.example.com/v1/queues (ok?)'
    assert redact(text) == text


class _Reference(JsonFormatter):
    """python-json-logger's own formatter, configured as ``KefuJsonFormatter``: what its lines must equal."""

    def __init__(self) -> None:
        super().__init__(**JSON_OPTIONS)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _records() -> list[logging.LogRecord]:
    def record(msg: object, *args: object, **extra: object) -> logging.LogRecord:
        return log.makeRecord(log.name, logging.INFO, __file__, 1, msg, args, None, extra=extra)

    try:
        raise ValueError("无效的值")
    except ValueError:
        failed = log.makeRecord(log.name, logging.ERROR, __file__, 1, "failed %s", ("x",), sys.exc_info())
    with_stack = record("stack")
    with_stack.stack_info = "Stack (most recent call last):\n  here"
    at = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)
    return [
        record("%s %s %d %.1fms", "POST", "/v1/offers/{offer_id}/accept", 200, 3.21, method="POST", status=200),
        record("客服 %s", "王小明", contact_id="c-1", at=at, count=3, ratio=0.5, none=None, items=[1, "二"]),
        record({"event": "dict message", "n": 1}),
        failed,
        with_stack,
        record("color", color_message="\x1b[1m%s\x1b[0m"),
    ]


@pytest.mark.parametrize("created", [1764549000.0, 1764549000.9995, 1764549000.9999996, 1764549000.0004999])
def test_json_lines_are_python_json_loggers_field_for_field(created: float) -> None:
    ours, reference = KefuJsonFormatter(), _Reference()
    with log_context(agent_id="alice"):
        for record in _records():
            record.created = created
            assert ours.format(record) == reference.format(record)
