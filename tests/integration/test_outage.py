"""Honest statuses: the database or the broker unreachable is a 503 with ``Retry-After`` on every route,
logged once when it begins and once when it ends, never per request and never as a traceback.

The database is cut with a TCP proxy in front of the session's PostgreSQL (never stopping the shared
server): cutting closes the listener and aborts every connection through it, so a reconnect is refused.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from kefu import kafka
from services.channels.config import ChannelsSettings
from services.escalation.config import EscalationSettings
from tests.integration.conftest import ALICE_TOKEN, CONFIG, SITE_SECRET, SUPERVISOR_TOKEN, start_broker
from tests.integration.support import (
    contact_event,
    eventually,
    free_port,
    publish_contacts,
    router_settings,
    serving,
    webchat_body,
)
from tools.assemble import channels_app, escalation_app, router_app
from tools.demo import signed_request
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration

ALICE = {"authorization": f"Bearer {ALICE_TOKEN}"}
SUPERVISOR = {"authorization": f"Bearer {SUPERVISOR_TOKEN}"}
ROUNDS = 10


class PostgresCut:
    """A TCP proxy to a PostgreSQL Unix socket that the test can cut (refusing and dropping) and restore."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        self.socket_path = f"{url.query['host']}/.s.PGSQL.{url.port or 5432}"
        self.port = free_port()
        self.url = f"postgresql://{url.username}@127.0.0.1:{self.port}/{url.database}"
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()
        self._server = None

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_unix_connection(self.socket_path)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, upstream_writer}
        await asyncio.gather(_copy(reader, upstream_writer), _copy(upstream_reader, writer))


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


@pytest.fixture
async def cut(database_url: str) -> AsyncIterator[PostgresCut]:
    proxy = PostgresCut(database_url)
    await proxy.restore()
    yield proxy
    if proxy._server is not None:
        await proxy.cut()


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def _assert_unavailable(response: httpx.Response, dependency: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == f"{dependency}_unavailable"
    assert "Traceback" not in response.text


async def test_database_unreachable_is_503_with_retry_after_logged_once_per_change(
    cut: PostgresCut, broker: EmbeddedKafka, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "kefu.yaml"  # offers that do not time out while the database is away
    config.write_text(CONFIG.replace("offer_timeout_seconds: 1", "offer_timeout_seconds: 300"), encoding="utf-8")
    caplog.set_level(logging.INFO)
    async with serving(router_app(router_settings(cut.url, broker, config))) as client:
        await publish_contacts(broker.bootstrap, contact_event("outage-1"), contact_event("outage-2"))

        async def two_offers() -> list[str]:
            offers = (await client.get("/v1/agents/alice/offers", headers=ALICE)).json()
            return [o["offer_id"] for o in offers] if len(offers) == 2 else []

        first, second = await eventually(two_offers)
        accepted = await client.post(f"/v1/offers/{first}/accept", headers=ALICE)
        assert accepted.status_code == 200, accepted.text
        assignment = accepted.json()["assignment_id"]

        await cut.cut()
        caplog.clear()
        for _ in range(ROUNDS):
            _assert_unavailable(await client.post(f"/v1/offers/{second}/accept", headers=ALICE), "database")
            _assert_unavailable(
                await client.post(f"/v1/assignments/{assignment}/complete", json={}, headers=ALICE), "database"
            )
            _assert_unavailable(await client.get("/v1/queues/presales/stats", headers=SUPERVISOR), "database")
        # a desktop resuming its event stream: the answer has begun (200), so the stream ends and it reconnects
        async with asyncio.timeout(10):
            stream = await client.get("/v1/agents/alice/events", headers={**ALICE, "Last-Event-ID": "0"})
        assert stream.status_code == 200 and stream.text.startswith("retry: "), stream.text
        assert len(_lines(caplog, "database unavailable")) == 1, caplog.text
        assert not _errors(caplog), _errors(caplog)

        await cut.restore()
        stats = await client.get("/v1/queues/presales/stats", headers=SUPERVISOR)
        assert stats.status_code == 200, stats.text
        # nothing was lost: the offer and the assignment are still there to act on
        assert (await client.post(f"/v1/offers/{second}/accept", headers=ALICE)).status_code == 200
        done = await client.post(f"/v1/assignments/{assignment}/complete", json={}, headers=ALICE)
        assert done.status_code == 200, done.text
    assert len(_lines(caplog, "database unavailable")) == 1, caplog.text
    assert len(_lines(caplog, "database available again")) == 1, caplog.text
    assert not _errors(caplog), _errors(caplog)


async def test_the_escalation_service_answers_503_too(
    cut: PostgresCut, broker: EmbeddedKafka, escalation_config_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = EscalationSettings(
        database_url=cut.url,
        kafka_bootstrap=broker.bootstrap,
        config_path=escalation_config_path,
        consumer_group="esc-outage",
    )
    caplog.set_level(logging.INFO)
    async with serving(escalation_app(settings)) as client:
        assert (await client.get("/v1/escalations", headers=SUPERVISOR)).status_code == 200
        await cut.cut()
        caplog.clear()
        for _ in range(ROUNDS):
            _assert_unavailable(await client.get("/v1/escalations", headers=SUPERVISOR), "database")
            _assert_unavailable(await client.get("/v1/routing-events", headers=SUPERVISOR), "database")
        assert len(_lines(caplog, "database unavailable")) == 1, caplog.text
        await cut.restore()
        assert (await client.get("/v1/routing-events", headers=SUPERVISOR)).status_code == 200
    assert len(_lines(caplog, "database available again")) == 1, caplog.text
    assert not _errors(caplog), _errors(caplog)


async def test_broker_unreachable_is_503_with_retry_after_logged_once(
    database_url: str, broker: EmbeddedKafka, config_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ChannelsSettings(
        database_url=database_url,
        kafka_bootstrap=broker.bootstrap,
        config_path=config_path,
        publish_timeout_seconds=0.5,
    )
    caplog.set_level(logging.INFO)
    async with serving(channels_app(settings)) as client:
        body = webchat_body("broker-1")
        ok = await client.post("/webhooks/webchat/shop", content=body, headers=signed_request(SITE_SECRET, body))
        assert ok.status_code == 202, ok.text
        broker.stop()
        caplog.clear()
        for round_ in range(ROUNDS):
            body = webchat_body(f"broker-{round_}")
            refused = await client.post(
                "/webhooks/webchat/shop", content=body, headers=signed_request(SITE_SECRET, body)
            )
            _assert_unavailable(refused, "broker")
        await asyncio.sleep(1)  # the producer's background reconnects keep failing meanwhile
        assert len(_lines(caplog, "broker unavailable")) == 1, caplog.text
        assert not [r for r in caplog.records if r.name.startswith("aiokafka") and r.levelno >= logging.WARNING]
        assert not _errors(caplog), _errors(caplog)


async def test_a_broker_cut_logs_one_line_per_client_and_change(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    first = start_broker()  # stopped at once (SIGINT), a cut rather than a 5 s goodbye
    await kafka.ensure_topics(first.bootstrap, ["outage.test"])
    producer = kafka.create_producer(first.bootstrap)
    # the production session (10 s), not the tests' 2 s: a 3 s outage would outlast that, and the consumer's
    # own session check would then log the group's coordinator lost once more after the broker is back
    consumer = kafka.create_consumer(
        first.bootstrap, "outage.test", group_id="outage-test", session_timeout=kafka.SESSION_TIMEOUT_MS
    )
    await producer.start()
    await consumer.start()
    await producer.send_and_wait("outage.test", b"before")
    try:
        await consumer.getmany(timeout_ms=1000)
        first.stop()
        caplog.clear()
        sends = [asyncio.create_task(producer.send_and_wait("outage.test", b"during")) for _ in range(20)]
        for _ in range(6):  # 3 s of fetching and sending to a broker that is gone
            await consumer.getmany(timeout_ms=500)
        second = start_broker(first.port)
        try:
            await kafka.ensure_topics(second.bootstrap, ["outage.test"])
            # the broker's memory is gone with it: these may fail, what counts is that they reach it again
            await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), timeout=15)

            async def both_back() -> bool:
                await consumer.getmany(timeout_ms=200)
                return len(_lines(caplog, "broker available again")) == 2

            await eventually(both_back)
        finally:
            await consumer.stop()
            await producer.stop()
            second.stop()
    finally:
        first.stop()
    for client in ("kafka consumer outage-test", "kafka producer"):
        assert len(_lines(caplog, f"broker unavailable ({client}")) == 1, caplog.text
        assert len(_lines(caplog, f"broker available again ({client}")) == 1, caplog.text
    noise = [r for r in caplog.records if r.name.startswith("aiokafka") and r.levelno >= logging.ERROR]
    assert not noise, [r.getMessage() for r in noise]
    # before: hundreds of ERROR lines a second per client; now the four above and the group rejoining
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) <= 8, loud
