"""The web chat webhook against a real Kafka-protocol broker: 2xx only once the broker holds the
contact; every bad input a clear 4xx with nothing published; 503 when the broker is gone."""

import time
from pathlib import Path

import pytest

from contracts import CONTACTS, ContactEvent
from services.channels.config import ChannelsSettings
from tests.integration.conftest import SITE_SECRET
from tests.integration.support import (
    assert_refused_then_still_serving,
    read_topic,
    serving,
    webchat_body,
)
from tools.assemble import channels_app as create_app
from tools.demo import signed_request
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration

URL = "/webhooks/webchat/shop"


@pytest.fixture
def settings(database_url: str, broker: EmbeddedKafka, config_path: Path) -> ChannelsSettings:
    return ChannelsSettings(database_url=database_url, kafka_bootstrap=broker.bootstrap, config_path=config_path)


async def test_a_signed_message_is_on_the_broker_before_the_2xx(
    broker: EmbeddedKafka, settings: ChannelsSettings
) -> None:
    body = webchat_body("conv-1", "空调不制冷")
    async with serving(create_app(settings)) as client:
        response = await client.post(URL, content=body, headers=signed_request(SITE_SECRET, body, msg_id="msg_1"))
        assert response.status_code == 202, response.text
        # acks=all was awaited before answering: the record is readable right away
        (record,) = await read_topic(broker.bootstrap, CONTACTS, at_least=1, timeout=0.5)
    event = ContactEvent.model_validate_json(record.value)
    assert record.key == b"webchat:shop:conv-1"
    assert str(event.event_id) == response.json()["event_id"]
    assert event.dedup_key == "msg_1"
    assert event.message.text == "空调不制冷"
    assert event.customer.display_name == "张伟"


async def test_retries_of_one_delivery_carry_one_event_id(settings: ChannelsSettings) -> None:
    body = webchat_body()
    async with serving(create_app(settings)) as client:
        ids = set()
        for _ in range(3):
            response = await client.post(URL, content=body, headers=signed_request(SITE_SECRET, body, msg_id="msg_x"))
            assert response.status_code == 202
            ids.add(response.json()["event_id"])
    assert len(ids) == 1


def _bad_requests() -> list[tuple[str, str, bytes, dict[str, str], int, str]]:
    body = webchat_body()
    good = signed_request(SITE_SECRET, body)
    stale = {**good, "webhook-timestamp": str(int(time.time()) - 600)}
    not_json = b"{this is not json"
    wrong_shape = b'{"conversation_id": "c1"}'
    invalid_utf8 = b'{"text": "\xff\xfe"}'
    return [
        ("unknown site", "/webhooks/webchat/nope", body, good, 404, "unknown_account"),
        ("no signature", URL, body, {"content-type": "application/json"}, 401, "bad_signature"),
        (
            "wrong signature",
            URL,
            body,
            signed_request("whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXk=", body),
            401,
            "bad_signature",
        ),
        ("stale timestamp", URL, body, stale, 401, "bad_signature"),
        ("tampered body", URL, body + b" ", good, 401, "bad_signature"),
        ("not json", URL, not_json, signed_request(SITE_SECRET, not_json), 400, "malformed_body"),
        ("wrong shape", URL, wrong_shape, signed_request(SITE_SECRET, wrong_shape), 422, "invalid_payload"),
        ("invalid utf-8", URL, invalid_utf8, {**good}, 400, "malformed_body"),
        ("too large", URL, b"{" + b" " * 300_000 + b"}", good, 413, "body_too_large"),
        ("form body", URL, body, {**good, "content-type": "application/x-www-form-urlencoded"}, 415, "unsupported"),
    ]


# signed when the test runs, not when pytest collects it: a slow run would otherwise send stale timestamps
@pytest.mark.parametrize("name", [b[0] for b in _bad_requests()])
async def test_bad_input_is_refused_and_nothing_is_published(
    broker: EmbeddedKafka, settings: ChannelsSettings, name: str
) -> None:
    _, url, body, headers, status, code = next(b for b in _bad_requests() if b[0] == name)
    good = webchat_body()
    async with serving(create_app(settings)) as client:
        await assert_refused_then_still_serving(
            client,
            (url, body, headers),
            status=status,
            code=code,
            good=(URL, good, signed_request(SITE_SECRET, good)),
            secrets=(SITE_SECRET,),
        )
    assert len(await read_topic(broker.bootstrap, CONTACTS, timeout=0.5)) == 1, f"{name}: something was published"


async def test_a_vanished_broker_gets_503_and_never_a_2xx(broker: EmbeddedKafka, settings: ChannelsSettings) -> None:
    app = create_app(settings.model_copy(update={"publish_timeout_seconds": 1.0}))
    async with serving(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        broker.stop()
        body = webchat_body()
        response = await client.post(URL, content=body, headers=signed_request(SITE_SECRET, body))
        assert response.status_code == 503
        assert response.json()["error"] == "broker_unavailable"
        assert response.headers["retry-after"] == "5"
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["broker"].startswith("unavailable")


async def test_a_broker_missing_at_start_means_503_until_it_comes(settings: ChannelsSettings) -> None:
    late = EmbeddedKafka()
    app = create_app(settings.model_copy(update={"kafka_bootstrap": late.bootstrap}))
    async with serving(app) as client:
        body = webchat_body()
        response = await client.post(URL, content=body, headers=signed_request(SITE_SECRET, body))
        assert response.status_code == 503
        assert (await client.get("/healthz")).status_code == 200
