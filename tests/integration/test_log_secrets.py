"""No secret and no personal data in the logs of a full scenario, captured as the services write them.

Signed and encrypted webhooks (web chat, a safe-mode WeChat Official Account, a WeCom customer service doorbell
that makes the channels pull from a WeCom API whose URLs carry ``corpsecret`` and ``access_token``) with phone
numbers and distinctive text → the router offers them → the escalation service opens a crisis case and notifies a
webhook whose URL carries an ``access_token`` → a database error on a record carrying the phone number and the
text, retried and dead-lettered by the shared consumer loop. Then every secret, token, key, phone number and text
used is looked for in every log line and in the dead-letter reason: none may be there. The lines are also checked
for shape: ISO 8601 UTC times, no colour codes, one access line per request with its path template, and the ids of
the work being done as fields.
"""

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert
from sqlalchemy.exc import DBAPIError

from contracts import ROUTING_EVENTS, ContactEvent, RoutingEvent
from contracts.topics import dlq
from kefu import db, kafka
from kefu.logs import bind
from services.channels.config import ChannelsSettings
from services.escalation.config import EscalationSettings
from services.router.adapters.orm import customers
from services.router.config import RouterSettings
from tests.fakes.wecom import FakeWecom
from tests.integration import test_channel_wechat, test_escalation_notifier
from tests.integration.support import contact_event, eventually, read_topic, serving
from tests.integration.test_channel_wechat import (
    CUSTOMER,
    DOORBELL_TOKEN,
    KF_SECRET,
    KF_URL,
    SAFE_URL,
    VECTOR_AES_KEY,
    VECTOR_ID,
    VECTOR_TOKEN,
    kf_message,
    kf_request,
    oa_text,
    safe_request,
)
from tests.integration.test_escalation_notifier import Receiver
from tests.logcapture import lines, service_logs
from tools.assemble import channels_app, escalation_app, router_app
from tools.demo import signed_request
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration

receiver = test_escalation_notifier.receiver  # a webhook receiver on loopback
wecom = test_channel_wechat.wecom  # a fake WeCom API on loopback

SITE_SECRET = "whsec_c2l0ZS1zZWNyZXQtZm9yLWxvZy10ZXN0cw=="
NOTIFY_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NOTIFY_TOKEN = "dingtalk-robot-token-5f1d0c8a9b7e"
NOTIFY_KEY = "wecom-robot-key-0b6e3c1f"
SUPERVISOR_TOKEN = "log-test-supervisor-token-93c1"
MOBILE = "13800138000"
PHONE = "+86 138 0013 8000"
VISITOR = "欧阳娜娜"
OPENID = "oLogTest-7Yq2mZ"
WEBCHAT_TEXT = f"订单 KX-7731 一直没发货，电话 {MOBILE}，再不处理我就找记者曝光"
WECHAT_TEXT = f"我的手机是 {PHONE}，发票抬头 蓝鲸科技"
KF_TEXT = f"退款单号 RF-0092，联系 {MOBILE}"
DB_TEXT = f"紫色独角兽 {MOBILE}"


DeadLetter = Callable[[], Awaitable[bytes]]


def config(wecom: FakeWecom) -> str:
    return f"""
channels:
  webchat:
    - {{id: shop, name: Shop, secrets: [{SITE_SECRET}]}}
  wechat:
    - id: oa-safe
      name: Safe-mode OA
      appid: {VECTOR_ID}
      token: {VECTOR_TOKEN}
      encoding_aes_key: {VECTOR_AES_KEY}
      require_encryption: true
  wecom_kf:
    - id: kf
      name: WeCom customer service
      corp_id: {VECTOR_ID}
      secret: {KF_SECRET}
      token: {VECTOR_TOKEN}
      encoding_aes_key: {VECTOR_AES_KEY}
      api_base: {wecom.api_base}
routing:
  default_queue: presales
  queues:
    - {{id: presales, name: Presales, channels: [webchat, wechat], offer_timeout_seconds: 60}}
    - {{id: crisis, name: Crisis, channels: [webchat, wechat], group: crisis}}
  agents:
    - {{id: alice, name: Alice, groups: [tier1], capacity: {{webchat: 3, wechat: 3}}, initial_presence: available}}
    - {{id: duty, name: Duty, groups: [crisis], capacity: {{webchat: 3, wechat: 3}}, initial_presence: available}}
auth:
  tokens:
    - {{token: {SUPERVISOR_TOKEN}, role: supervisor}}
"""


def policy(receiver: Receiver) -> str:
    return f"""
escalation:
  targets:
    crisis:
      group: crisis
      queue: crisis
      priority: 100
      notify:
        - name: crisis-room
          url: "{receiver.url}?access_token={NOTIFY_TOKEN}&key={NOTIFY_KEY}"
          secret: KEFU_TEST_WEBHOOK
  triggers:
    crisis:
      target: crisis
      lexicon:
        media: {{terms: [曝光, 记者]}}
"""


@contextlib.asynccontextmanager
async def services(
    tmp_path: Path, database_url: str, broker: EmbeddedKafka, receiver: Receiver, wecom: FakeWecom
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """The three services in process; yields the channels' and the router's clients."""
    config_path, policy_path = tmp_path / "kefu.yaml", tmp_path / "escalation.yaml"
    config_path.write_text(config(wecom), encoding="utf-8")
    policy_path.write_text(policy(receiver), encoding="utf-8")
    common: dict[str, Any] = {"database_url": database_url, "kafka_bootstrap": broker.bootstrap}
    apps = (
        router_app(RouterSettings(**common, config_path=config_path)),
        escalation_app(EscalationSettings(**common, config_path=config_path, policy_path=policy_path)),
        channels_app(ChannelsSettings(**common, config_path=config_path)),
    )
    async with contextlib.AsyncExitStack() as stack:
        # started side by side: each waits seconds for its consumer groups to form
        router, _, channels = await asyncio.gather(*(stack.enter_async_context(serving(app)) for app in apps))
        yield channels, router


async def routed_contacts(broker: EmbeddedKafka, at_least: int) -> set[uuid.UUID] | None:
    records = await read_topic(broker.bootstrap, ROUTING_EVENTS, timeout=1)
    offered = {RoutingEvent.model_validate_json(r.value).contact_id for r in records}
    return offered if len(offered) >= at_least else None


async def notified(receiver: Receiver, contact_id: str) -> bool:
    return any(contact_id.encode() in r.body for r in receiver.delivered())


@contextlib.asynccontextmanager
async def a_database_error(database_url: str, broker: EmbeddedKafka, topic: str) -> AsyncIterator[DeadLetter]:
    """A consumer of ``topic`` (``kafka.consume``) whose handler's insert violates a unique key holding the phone
    number (with the message text among the parameters); yields what publishes a record to it and returns the
    dead-letter reason. Started first: its consumer group forms while the services start."""
    await kafka.ensure_topics(broker.bootstrap, [topic, dlq(topic)], partitions=1)
    engine = db.create_engine(database_url, pool_size=1)
    row = {"external_id": MOBILE, "display_name": DB_TEXT}
    async with engine.begin() as conn:
        await conn.execute(insert(customers).values(id=uuid.uuid4(), **row))

    async def handler(event: ContactEvent) -> None:
        bind(contact_id=event.event_id)  # as the router's and the escalation service's handlers do
        try:
            async with engine.begin() as conn:
                await conn.execute(insert(customers).values(id=event.event_id, **row))
        except DBAPIError as exc:
            # a failure of the handler's own, the database error chained: retried, then logged with its traceback
            raise LookupError("the customer could not be recorded") from exc

    async def dead_letter() -> bytes:
        event = contact_event("db-error", text=DB_TEXT)
        await producer.send_and_wait(topic, event.model_dump_json().encode(), key=b"db-error")
        (dead,) = await eventually(lambda: read_topic(broker.bootstrap, dlq(topic), timeout=0.5))
        reason: bytes = dict(dead.headers)["kefu-dlq-reason"]
        return reason

    producer = kafka.create_producer(broker.bootstrap)
    consumer = kafka.create_consumer(broker.bootstrap, topic, group_id=topic)
    await producer.start()
    await consumer.start()
    task = asyncio.create_task(kafka.consume(consumer, producer, ContactEvent, handler, retry_delay=0.05))
    try:
        yield dead_letter
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
        await engine.dispose()


async def test_a_full_scenario_logs_no_secret_and_no_personal_data(
    tmp_path: Path,
    database_url: str,
    broker: EmbeddedKafka,
    receiver: Receiver,
    wecom: FakeWecom,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KEFU_TEST_WEBHOOK", NOTIFY_SECRET)
    wecom.pages[""] = {"errcode": 0, "next_cursor": "C1", "has_more": 0, "msg_list": [kf_message("kf-1", KF_TEXT)]}
    body = (
        f'{{"conversation_id": "conv-log", "visitor": {{"id": "visitor-{MOBILE}", "name": "{VISITOR}"}}, '
        f'"message": {{"text": "{WEBCHAT_TEXT}", "sent_at": "2026-11-30T16:11:22Z"}}}}'
    ).encode()
    webchat_headers = signed_request(SITE_SECRET, body, msg_id="msg_log_1")
    oa_params, oa_body = safe_request(oa_text(OPENID, WECHAT_TEXT, msg_id="77001"))
    kf_params, kf_body = kf_request()

    topic = f"kefu.logtest.{uuid.uuid4().hex[:8]}.v1"
    with service_logs() as out:
        async with (
            a_database_error(database_url, broker, topic) as dead_letter,
            services(tmp_path, database_url, broker, receiver, wecom) as (channels, router),
        ):
            answered = await channels.post("/webhooks/webchat/shop", content=body, headers=webchat_headers)
            assert answered.status_code == 202, answered.text
            contact_id = answered.json()["event_id"]
            xml = {"content-type": "text/xml"}
            answered = await channels.post(SAFE_URL, params=oa_params, content=oa_body.encode(), headers=xml)
            assert (answered.status_code, answered.text) == (200, "success")
            answered = await channels.post(KF_URL, params=kf_params, content=kf_body.encode(), headers=xml)
            assert answered.status_code == 200, answered.text

            await eventually(lambda: routed_contacts(broker, 3))
            await eventually(
                lambda: asyncio.sleep(0, [r for r in receiver.delivered() if contact_id.encode() in r.body])
            )
            supervisor = {"authorization": f"Bearer {SUPERVISOR_TOKEN}"}
            shown = await router.get(f"/v1/contacts/{contact_id}", headers=supervisor)
            assert shown.status_code == 200, shown.text
            reason = await dead_letter()

    written = out.getvalue()
    print(written)
    used = {
        "web chat signing secret": SITE_SECRET,
        "web chat signature": webchat_headers["webhook-signature"].split(",", 1)[1],
        "WeChat token": VECTOR_TOKEN,
        "WeChat EncodingAESKey": VECTOR_AES_KEY,
        "WeChat msg_signature": oa_params["msg_signature"],
        "WeCom corp secret": KF_SECRET,
        "WeCom access token": f"ACCESS-{wecom.tokens_issued}",
        "WeCom doorbell token": DOORBELL_TOKEN,
        "notification URL token": NOTIFY_TOKEN,
        "notification URL key": NOTIFY_KEY,
        "notification signing secret": NOTIFY_SECRET,
        "supervisor bearer token": SUPERVISOR_TOKEN,
        "mobile number": MOBILE,
        "phone number": PHONE,
        "phone number, digits": PHONE.replace(" ", ""),
        "visitor name": VISITOR,
        "WeChat OpenID": OPENID,
        "WeCom external user id": CUSTOMER,
        **{f"message text {i}": text for i, text in enumerate((WEBCHAT_TEXT, WECHAT_TEXT, KF_TEXT, DB_TEXT))},
        "words of a message": "蓝鲸科技",
    }
    assert wecom.tokens_issued >= 1
    leaks = {name for name, value in used.items() if value in written or value.encode() in reason}
    assert not leaks, f"found in the logs or the dead-letter reason: {sorted(leaks)}"

    logged = lines(out)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]) for line in logged)
    assert "\x1b" not in written and "\\u001b" not in written
    access = [line for line in logged if line["logger"] == "kefu.access"]
    assert [(a["method"], a["path"], a["status"]) for a in access] == [
        ("POST", "/webhooks/webchat/{site_id}", 202),
        ("POST", "/webhooks/wechat/{account_id}", 200),
        ("POST", "/webhooks/wecom-kf/{account_id}", 200),
        ("GET", "/v1/contacts/{contact_id}", 200),
    ]
    assert access[-1]["contact_id"] == contact_id
    # httpx's request lines stay, cut at the query
    assert any(f"POST {receiver.url} " in line["message"] for line in logged if line["logger"] == "httpx")
    # what the consumer loop says of the failing record carries the record's id
    failing = [line for line in logged if line["logger"] == "kefu.kafka" and f"{topic}[0]@0" in line["message"]]
    assert failing and all("event_id" in line and "contact_id" in line for line in failing)
    # the database error was logged, with its whole chain: what the search above went through
    assert any("UniqueViolationError" in line.get("exc_info", "") for line in failing)
