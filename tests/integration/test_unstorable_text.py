"""Text PostgreSQL cannot store, posted on every channel with the platform's real signature, is acknowledged and then
really delivered: the router opens the contact and offers it, the escalation service records the message, nothing
is dead-lettered. NUL and a lone surrogate (half an emoji) become U+FFFD in the contract (``contracts.text``)."""

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import parse_qsl, urlencode

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from contracts import CONTACTS, dlq
from kefu.config_file import load_section
from kefu.settings import EXAMPLE_CONFIG, REPO_ROOT
from services.channels.accounts import ChannelsConfig
from services.channels.config import ChannelsSettings
from services.channels.douyin.signature import DouyinSignatureVerifier
from services.channels.phone.twilio import compute_signature
from services.escalation.adapters.orm import contact_messages
from services.escalation.config import EscalationSettings
from services.router.adapters.orm import contacts, messages, offers
from tests.integration.support import eventually, read_topic, router_settings, serving
from tools.assemble import channels_app as create_app
from tools.assemble import escalation_running, router_running
from tools.demo import CHANNELS, signed_request
from tools.demo_channels import DemoRequest
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration

NUL = "你好\x00在吗"
MARK = "MARK-7f3a"
HALF_EMOJI = "\\ud83d"  # a JSON escape of a lone high surrogate: the first half of 😀, cut by a length limit
CONFIG = load_section(EXAMPLE_CONFIG, "channels", ChannelsConfig)


def _json_with(channel: str, escaped: str, conversation: str) -> DemoRequest:
    """The demo request of a JSON channel with ``escaped`` (JSON escapes) as its text, signed again."""
    request = CHANNELS[channel](CONFIG, None, MARK, conversation)
    body = request.body.replace(MARK.encode(), escaped.encode())
    if channel == "webchat":
        headers = signed_request(CONFIG.webchat[0].secrets[0].get_secret_value(), body)
    else:
        signature = DouyinSignatureVerifier(CONFIG.douyin[0].client_secret.get_secret_value()).sign(body)
        headers = {**request.headers, "x-douyin-signature": signature, "msg-id": uuid.uuid4().hex}
    return DemoRequest(request.path, body, headers, request.params)


def _call_with_caller_name(name: str) -> DemoRequest:
    """An incoming call whose carrier sends ``name`` as the caller's name (CNAM), signed as Twilio signs."""
    request = CHANNELS["phone"](CONFIG, None, "", "caller-1")
    form = [*parse_qsl(request.body.decode()), ("CallerName", name)]
    line = CONFIG.phone[0]
    url = line.public_url.rstrip("/") + request.path
    signature = compute_signature(line.auth_token.get_secret_value().encode(), url, sorted(form))
    return DemoRequest(request.path, urlencode(form).encode(), {**request.headers, "x-twilio-signature": signature})


REQUESTS: dict[str, Callable[[], DemoRequest]] = {
    "webchat NUL": lambda: CHANNELS["webchat"](CONFIG, None, NUL, "nul"),
    "webchat lone surrogate": lambda: _json_with("webchat", f"半个表情{HALF_EMOJI}\\u0000", "half"),
    "douyin NUL": lambda: CHANNELS["douyin"](CONFIG, None, NUL, "nul"),
    "douyin lone surrogate": lambda: _json_with("douyin", f"半个表情{HALF_EMOJI}", "half"),
    "wechat NUL (safe mode XML)": lambda: CHANNELS["wechat"](CONFIG, None, NUL, "nul"),
    "email NUL": lambda: CHANNELS["email"](CONFIG, None, NUL, "nul"),
    "phone NUL in the caller name": lambda: _call_with_caller_name("张\x00伟"),
}


@contextlib.asynccontextmanager
async def engine_of(url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_text_the_database_cannot_store_is_delivered_on_every_channel(
    database_url: str, broker: EmbeddedKafka
) -> None:
    channels = ChannelsSettings(database_url=database_url, kafka_bootstrap=broker.bootstrap, config_path=EXAMPLE_CONFIG)
    escalation = EscalationSettings(
        database_url=database_url,
        kafka_bootstrap=broker.bootstrap,
        config_path=EXAMPLE_CONFIG,
        policy_path=REPO_ROOT / "deploy" / "examples" / "escalation.yaml",
        consumer_group=f"escalation-{uuid.uuid4().hex[:8]}",
    )
    async with (
        router_running(router_settings(database_url, broker, EXAMPLE_CONFIG)),
        escalation_running(escalation),
        serving(create_app(channels)) as client,
        engine_of(database_url) as engine,
    ):
        for name, build in REQUESTS.items():
            request = build()
            response = await client.post(
                request.path, params=request.params, content=request.body, headers=request.headers
            )
            assert response.is_success, (name, response.status_code, response.text)

        async def offered() -> list[tuple[str, str, str | None, int]] | None:
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(
                        select(contacts.c.channel, messages.c.text, contacts.c.customer_name, func.count(offers.c.id))
                        .join(messages, messages.c.contact_id == contacts.c.id)
                        .outerjoin(offers, offers.c.contact_id == contacts.c.id)
                        .group_by(contacts.c.id, messages.c.id)
                    )
                ).all()
            found = [(r[0], r[1], r[2], r[3]) for r in rows]
            return found if len(found) == len(REQUESTS) and all(r[3] for r in found) else None

        rows = await eventually(offered, timeout=30)

        async def recorded() -> list[str] | None:
            async with engine.connect() as conn:
                texts = list((await conn.execute(select(contact_messages.c.text))).scalars())
            return texts if len(texts) == len(REQUESTS) else None

        escalation_texts = await eventually(recorded, timeout=30)

    assert sorted(r[0] for r in rows) == sorted(["webchat", "webchat", "douyin", "douyin", "wechat", "email", "phone"])
    for channel, text, customer_name, _ in rows:
        shown = customer_name if channel == "phone" else text
        assert shown is not None and "\ufffd" in shown, (channel, shown)
    assert "你好\ufffd在吗" in {text for _, text, _, _ in rows}
    assert "半个表情\ufffd" in {text.strip() for _, text, _, _ in rows}  # douyin: the surrogate alone
    assert sum("\ufffd" in t for t in escalation_texts) == len(REQUESTS) - 1  # the call's text has no caller name
    assert await read_topic(broker.bootstrap, dlq(CONTACTS), timeout=1) == []
