"""Canonical identities end to end: identities linked by hand through the router's API and the contacts the
channel adapters build name one customer, invalid identities are refused with 422 saying why, and the migration
rewrites identities stored before in their canonical form."""

import asyncio
import functools
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from contracts import ContactEvent
from services.channels.email.inbox import EmailInbox, MimeLimits
from services.channels.email.mime import parse_mime
from services.channels.email.threads import to_contact_event as email_event
from services.channels.phone.calls import TwilioCall, incoming_call
from services.channels.wechat.accounts import WechatAccount
from services.channels.wechat.official_messages import official_account_event
from services.router.adapters.orm import contacts, customer_identities, customers
from tests.integration.conftest import CONFIG, SUPERVISOR_TOKEN
from tests.integration.support import contact_event, eventually, publish_contacts, router_settings, serving
from tools.assemble import router_app as create_app
from tools.embedded import EmbeddedKafka
from tools.migrate import alembic_config

pytestmark = pytest.mark.integration

SUPERVISOR = {"authorization": f"Bearer {SUPERVISOR_TOKEN}"}
OPENID = "oLVPpjqs9BhvzwPj5A-vTYAX3GLc"
MIGRATION = "c0de5e110006"


@pytest.fixture
def every_channel_config(tmp_path: Path) -> Path:
    path = tmp_path / "kefu.yaml"
    served = "channels: [webchat, phone, email, wechat], skills: {presales: 1}"
    config = CONFIG.replace("channels: [webchat], skills: {presales: 1}", served, 1)
    config = config.replace("capacity: {webchat: 2}", "capacity: {webchat: 2, phone: 1, email: 2, wechat: 2}", 1)
    path.write_text(config, encoding="utf-8")
    return path


def call_from(number: str) -> ContactEvent:
    sid = "CA" + uuid.uuid4().hex
    call = TwilioCall.model_validate({"CallSid": sid, "CallStatus": "ringing", "From": number, "To": "+861065529988"})
    return incoming_call("hotline", "CN", call, datetime.now(UTC))


INBOX = EmailInbox.model_validate(
    {"id": "support", "name": "Support", "address": "support@shop.example.com", "provider": "raw", "bearer_token": "t"}
)


def mail_from(sender: str) -> ContactEvent:
    raw = f"From: {sender}\r\nMessage-ID: <{uuid.uuid4().hex}@mail.example.com>\r\nSubject: 订单\r\n\r\n你好"
    return email_event(INBOX, parse_mime(raw.encode(), MimeLimits()), datetime.now(UTC))


def follower_message(openid: str) -> ContactEvent:
    account = WechatAccount.model_validate({"id": "oa", "name": "OA", "appid": "wx5823bf96d3bd56c7", "token": "AAAAA"})
    fields = {"FromUserName": openid, "CreateTime": "1764525600", "MsgType": "text", "Content": "在吗", "MsgId": "1"}
    event = official_account_event(account, fields, datetime.now(UTC))
    assert event is not None
    return event


async def test_a_manual_link_and_the_adapters_name_one_customer(
    database_url: str, broker: EmbeddedKafka, every_channel_config: Path
) -> None:
    app = create_app(router_settings(database_url, broker, every_channel_config))
    async with serving(app) as client:

        async def customer_of(event: ContactEvent) -> str | None:
            found = await client.get(f"/v1/contacts/{event.event_id}", headers=SUPERVISOR)
            return str(found.json()["customer_id"]) if found.status_code == 200 else None

        first, earlier_call = contact_event("known-1"), call_from("+86 139 0013 9000")
        await publish_contacts(broker.bootstrap, first, earlier_call)
        customer_id = await eventually(lambda: customer_of(first))
        caller_id = await eventually(lambda: customer_of(earlier_call))
        assert caller_id != customer_id

        identities = f"/v1/customers/{customer_id}/identities"
        for channel, written in [
            ("phone", "+86 138 0013 8000"),
            ("phone", "13800138000"),  # the same number, national: one identity
            ("email", "Zhang.Wei@Example.COM"),
            ("wechat", f" {OPENID} "),
            ("phone", "(0139) 0013 9000"),  # the earlier caller: their customer merges into this one
        ]:
            answer = await client.post(
                identities, json={"channel": channel, "platform_id": written}, headers=SUPERVISOR
            )
            assert answer.status_code == 200, answer.text
        linked = {(i["channel"], i["platform_id"]) for i in answer.json()["identities"]}
        assert linked == {
            ("webchat", "visitor-known-1"),
            ("phone", "+8613800138000"),
            ("phone", "+8613900139000"),
            ("email", "zhang.wei@example.com"),
            ("wechat", OPENID),
        }
        assert await customer_of(earlier_call) == customer_id

        # the customer comes back on every channel, as the channel adapters write them
        later = [call_from("+8613800138000"), mail_from("Zhang Wei <ZHANG.WEI@example.com>"), follower_message(OPENID)]
        await publish_contacts(broker.bootstrap, *later)
        for event in later:
            assert await eventually(functools.partial(customer_of, event)) == customer_id, event.channel
        view = (await client.get(f"/v1/customers/{customer_id}", headers=SUPERVISOR)).json()
        assert len(view["identities"]) == 5
        assert len(view["contacts"]) == 5


@pytest.mark.parametrize(
    ("channel", "platform_id", "why"),
    [
        ("phone", "not a number", "not a phone number"),
        ("phone", "+86 123", "not a phone number"),
        ("phone", "sip:@example.com", "SIP"),
        ("email", "Not An Email", "not an e-mail address"),
        ("email", "Zhang Wei <zhang@example.com>", "display name"),
        ("email", "zhang@localhost", "period"),
        ("wechat", "x", "not a WeChat id"),
        ("wechat", "oLVPpjqs9Bhv\u202ezwPj5A", "not a WeChat id"),
        ("douyin", "抖音用户12345", "not a Douyin id"),
        ("webchat", "   ", "blank"),
    ],
)
async def test_what_is_no_identity_is_refused_with_422_saying_why(
    database_url: str, broker: EmbeddedKafka, config_path: Path, channel: str, platform_id: str, why: str
) -> None:
    app = create_app(router_settings(database_url, broker, config_path))
    async with serving(app) as client:
        first = contact_event("refused-1")
        await publish_contacts(broker.bootstrap, first)

        async def contact() -> dict[str, Any] | None:
            found = await client.get(f"/v1/contacts/{first.event_id}", headers=SUPERVISOR)
            return dict(found.json()) if found.status_code == 200 else None

        customer = f"/v1/customers/{(await eventually(contact))['customer_id']}"
        body = {"channel": channel, "platform_id": platform_id}
        answer = await client.post(f"{customer}/identities", json=body, headers=SUPERVISOR)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"] == "invalid_identity"
        assert answer.json()["detail"].startswith("platform_id: ")
        assert why in answer.json()["detail"]
        assert len((await client.get(customer, headers=SUPERVISOR)).json()["identities"]) == 1


async def test_the_migration_rewrites_stored_identities_and_merges_who_they_name(database_url: str) -> None:
    config = alembic_config(database_url)
    before = ScriptDirectory.from_config(config).get_revision(MIGRATION).down_revision
    assert isinstance(before, str)
    await asyncio.to_thread(command.downgrade, config, before)
    linked, caller, member, bad = (uuid.uuid4() for _ in range(4))
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(customers),
                [{"id": i, "external_id": "member-7" if i == caller else None} for i in (linked, caller, member, bad)],
            )
            await conn.execute(
                insert(customer_identities),
                [
                    {"channel": "phone", "platform_id": "+86 138 0013 8000", "customer_id": linked},  # a manual link
                    {"channel": "phone", "platform_id": "+8613800138000", "customer_id": caller},  # the caller
                    {"channel": "email", "platform_id": "Zhang.Wei@Example.COM", "customer_id": member},
                    {"channel": "email", "platform_id": "Not An Email", "customer_id": bad},  # left as it is
                    {"channel": "webchat", "platform_id": " Visitor ", "customer_id": bad},  # the site's own id
                ],
            )
            await conn.execute(
                insert(contacts).values(
                    id=uuid.uuid4(),
                    conversation_key="phone:hotline:CA1",
                    channel="phone",
                    account_id="hotline",
                    customer_platform_id="+8613800138000",
                    customer_id=caller,
                    queue_id="presales",
                    priority=10,
                    status="closed",
                    enqueued_at=datetime.now(UTC),
                )
            )
        await asyncio.to_thread(command.upgrade, config, "head")
        async with engine.connect() as conn:
            identity = customer_identities.c
            stored = set(
                (await conn.execute(select(identity.channel, identity.platform_id, identity.customer_id))).all()
            )
            remaining = {row.id: row.external_id for row in await conn.execute(select(customers))}
            moved = (await conn.execute(select(contacts.c.customer_id))).scalar_one()
    finally:
        await engine.dispose()
    assert stored == {
        ("phone", "+8613800138000", linked),
        ("email", "zhang.wei@example.com", member),
        ("email", "Not An Email", bad),
        ("webchat", " Visitor ", bad),
    }
    assert remaining == {linked: "member-7", member: None, bad: None}
    assert moved == linked
