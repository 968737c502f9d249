"""schemathesis over the channels service's OpenAPI: the real app on loopback (a real PostgreSQL, Tansu, a fake
WeCom API), every generated request signed as its platform signs it, so that it gets past verification and the
generated body is what gets parsed. One call at a time, then in sequences that follow the document's links. No
answer may be a 5xx, a success must match the document, and a contact acknowledged with an event id is on the
contacts topic.

The channels document does not describe webhook bodies (each platform's format is parsed by hand, not by
FastAPI), so the test adds them: web chat and Douyin as their pydantic models, WeChat and WeCom as the XML
elements, e-mail as the RFC 5322 headers and text, the phone webhooks as Twilio's form. Account ids are the
configured ones, or an unknown one."""

import json
import re
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx
import pytest
import schemathesis
from pydantic import BaseModel
from schemathesis import Case
from schemathesis.core.transport import Response

from contracts import CONTACTS, ContactEvent
from services.channels.douyin.events import DouyinWebhook, PrivateMessage
from services.channels.phone.calls import TwilioCall
from services.channels.webchat.webhook import WebchatWebhook
from tests.integration import fuzz_support as fz
from tests.integration.support import read_topic
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration

STATELESS_EXAMPLES = 150
SCENARIOS, STEPS = 20, 5  # up to 100 linked calls; the file takes about 25 s

FORM = "application/x-www-form-urlencoded"
XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


def _strings(*names: str) -> dict[str, Any]:
    return {"type": "object", "properties": {name: {"type": "string"} for name in names}}


def _model(document: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    document.setdefault("components", {}).setdefault("schemas", {}).update(schema.pop("$defs", {}))
    return schema


def _document(base_url: str) -> dict[str, Any]:
    """The served document with request bodies, signing-independent query parameters and account ids added."""
    document = fz.fetch_document(base_url)
    douyin = _model(document, DouyinWebhook)
    douyin["properties"]["content"] = _model(document, PrivateMessage)
    bodies: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {
        ("post", "/webhooks/webchat/{site_id}"): ("application/json", _model(document, WebchatWebhook)),
        ("post", "/webhooks/douyin/{app_id}"): ("application/json", douyin),
        ("post", "/webhooks/wechat/{account_id}"): (
            "text/xml",
            _strings("ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId", "Event", "EventKey"),
        ),
        ("post", "/webhooks/wecom-kf/{account_id}"): ("text/xml", _strings("ToUserName", "Event", "Token", "OpenKfId")),
        ("post", "/webhooks/email/{inbox_id}"): (
            "message/rfc822",
            _strings("From", "To", "Subject", "Message-ID", "text"),
        ),
        ("post", "/webhooks/phone/{line_id}"): ("application/x-www-form-urlencoded", _model(document, TwilioCall)),
        ("post", "/webhooks/phone/{line_id}/status"): (
            "application/x-www-form-urlencoded",
            _model(document, TwilioCall),
        ),
    }
    accounts = {"site_id": fz.WEBCHAT.id, "app_id": fz.DOUYIN.id, "inbox_id": fz.RAW_INBOX.id, "line_id": fz.LINE.id}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if (method, path) in bodies:
                media_type, schema = bodies[method, path]
                operation["requestBody"] = {"required": True, "content": {media_type: {"schema": schema}}}
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    own = fz.KF.id if "wecom-kf" in path else accounts.get(parameter["name"], fz.OFFICIAL_ACCOUNT.id)
                    parameter["schema"] = {"type": "string", "enum": [own, own, own, "no-such-account"]}
            if method == "get":  # the URL checks: the echo string is generated, the signature is computed
                operation.setdefault("parameters", []).append(
                    {"name": "echostr", "in": "query", "required": True, "schema": {"type": "string"}}
                )
            if (method, path) == ("post", "/webhooks/wechat/{account_id}"):
                operation.setdefault("parameters", []).append(
                    {"name": "encrypt_type", "in": "query", "schema": {"type": "string", "enum": ["raw", "aes"]}}
                )
    return document


def _text(value: Any) -> str:
    """``value`` as text a non-JSON wire format can carry (lone surrogates become U+FFFD)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = value if isinstance(value, str) else json.dumps(value)
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _xml(body: Any) -> str:
    fields = body.items() if isinstance(body, Mapping) else [("Content", body)]
    inner = "".join(f"<{k}>{escape(_text(v))}</{k}>" for k, v in fields if XML_NAME.fullmatch(str(k)))
    return f"<xml>{inner}</xml>"


def _json(body: Any) -> bytes:
    if isinstance(body, bytes):  # negative generation: bytes, as UTF-8 (web chat signs text)
        return body.decode("utf-8", "replace").encode()
    try:
        return json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # lone surrogates travel as \\u escapes
        return json.dumps(body).encode()


def _email(body: Any) -> bytes:
    fields = dict(body) if isinstance(body, Mapping) else {"text": body}
    text = _text(fields.pop("text", ""))
    head = "".join(f"{name}: {_text(value)}\r\n" for name, value in fields.items() if XML_NAME.fullmatch(str(name)))
    return f"{head}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}".encode()


@schemathesis.serializer("message/rfc822")
def _rfc822(_: Any, value: Any) -> bytes:
    """Lets schemathesis generate e-mail bodies; what is sent is built and signed by ``_signed``."""
    return _email(value)


def _signed(case: Case[Any]) -> fz.Webhook:
    """The request ``case`` describes, signed for its account as the platform would sign it."""
    path, body, query = case.formatted_path, case.body, dict(case.query or {})
    marker = f"openapi-{uuid.uuid4().hex}"
    if case.method.upper() == "GET":
        echostr = _text(query.get("echostr", ""))
        if "wecom-kf" in path:
            return fz.wecom_kf(echostr, path, method="GET")
        return fz.wechat_url_check(echostr, path)
    if "/webchat/" in path:
        return fz.webchat(_json(body), marker, path)
    if "/douyin/" in path:
        return fz.douyin(_json(body), marker, path)
    if "/wechat/" in path:
        return fz.wechat(_xml(body), None, safe=query.get("encrypt_type") == "aes", path=path)
    if "/wecom-kf/" in path:
        return fz.wecom_kf(_xml(body), path)
    if "/email/" in path:
        return fz.raw_email(_email(body), None, path)
    fields = body.items() if isinstance(body, Mapping) else [("Body", body)]
    return fz.phone([(_text(k), _text(v)) for k, v in fields], None, path)


@pytest.fixture
def service(database_url: str, broker: EmbeddedKafka, tmp_path: Path) -> Iterator[fz.ChannelsUnderTest]:
    with fz.channels_service(database_url, broker.bootstrap, tmp_path) as service:
        yield service


async def test_no_signed_webhook_answers_with_a_server_error(
    service: fz.ChannelsUnderTest, broker: EmbeddedKafka
) -> None:
    schema = schemathesis.openapi.from_dict(_document(service.url)).include(path_regex="^/webhooks/")
    acknowledged: list[str] = []

    def send(case: Case[Any], _: Mapping[str, Any]) -> Response:
        webhook = _signed(case)
        with httpx.Client(base_url=service.url, timeout=30) as client:
            response = webhook.send(client)
        if response.is_success and response.headers.get("content-type", "").startswith("application/json"):
            event_id = response.json().get("event_id")
            if event_id:
                acknowledged.append(event_id)
        return Response.from_httpx(response, verify=True)

    stateless = fz.fuzz_stateless(schema, base_url=service.url, tokens=[], examples=STATELESS_EXAMPLES, send=send)
    stateful = fz.fuzz_stateful(schema, base_url=service.url, tokens=[], scenarios=SCENARIOS, steps=STEPS, send=send)

    assert not stateless.problems(), stateless.problems()
    assert not stateful.problems(), stateful.problems()
    operations = {f"{op.method.upper()} {op.path}" for op in (r.ok() for r in schema.get_all_operations())}  # type: ignore[union-attr]
    assert stateless.seen.keys() == operations, f"never called: {sorted(operations - stateless.seen.keys())}"
    accepted = {label for label, codes in stateless.seen.items() if any(code < 300 for code in codes)}
    assert len(accepted) >= 4, stateless.seen  # signed well enough to get past verification on most webhooks
    records = await read_topic(broker.bootstrap, CONTACTS, at_least=len(acknowledged), timeout=20)
    published = {str(ContactEvent.model_validate_json(record.value).event_id) for record in records}
    assert set(acknowledged) <= published, f"acknowledged but not published: {set(acknowledged) - published}"
