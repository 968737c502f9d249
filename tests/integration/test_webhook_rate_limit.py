"""Webhook rate limits per channel account on the running channels service: 429 with an honest Retry-After,
other accounts unaffected, unknown accounts not counted."""

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import limits.aio.strategies
import pytest

from services.channels.common import rate_limit
from services.channels.config import ChannelsSettings
from tests.integration.conftest import CONFIG, SITE_SECRET
from tests.integration.support import free_port, server_in_thread, webchat_body
from tools.assemble import channels_app
from tools.demo import signed_request
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration

OTHER_SITE = "    - {id: other, name: Other shop, secrets: [" + SITE_SECRET + "]}\n"


@dataclass
class Clock:
    """The limiter's clock (``time.time`` of the ``limits`` storage and of the middleware), moved by the test:
    a window of seconds no longer passes by itself while a loaded machine serves the requests that fill it."""

    now: float = field(default_factory=time.time)

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    for module in (limits.aio.strategies, rate_limit):
        monkeypatch.setattr(module, "time", fake)
    return fake


@contextlib.contextmanager
def channels_at(settings: ChannelsSettings) -> Iterator[str]:
    with server_in_thread(channels_app(settings), free_port(), lifespan="on", settings=settings) as url:
        yield url


def channels_settings(database_url: str, broker: EmbeddedKafka, tmp_path: Path, rate: str) -> ChannelsSettings:
    config = tmp_path / "kefu.yaml"
    config.write_text(CONFIG.replace("  webchat:\n", "  webchat:\n" + OTHER_SITE, 1), encoding="utf-8")
    return ChannelsSettings(
        database_url=database_url, kafka_bootstrap=broker.bootstrap, config_path=config, webhook_rate_limit=rate
    )


async def post(client: httpx.AsyncClient, site: str, conversation: str, *, signed: bool = True) -> httpx.Response:
    body = webchat_body(conversation)
    headers = signed_request(SITE_SECRET, body) if signed else {"content-type": "application/json"}
    return await client.post(f"/webhooks/webchat/{site}", content=body, headers=headers)


async def test_an_account_over_its_rate_gets_429_with_retry_after_and_other_accounts_are_served(
    database_url: str, broker: EmbeddedKafka, tmp_path: Path, clock: Clock
) -> None:
    settings = channels_settings(database_url, broker, tmp_path, "5/minute")
    with channels_at(settings) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            answers = [await post(client, "shop", f"c{i}") for i in range(8)]
            assert [a.status_code for a in answers] == [202] * 5 + [429] * 3, [a.text for a in answers]
            refused = answers[-1]
            assert refused.json()["error"] == "rate_limited"
            assert 1 <= int(refused.headers["retry-after"]) <= 60
            # counted before anything else is done: an unsigned post is refused the same way, unread
            assert (await post(client, "shop", "x", signed=False)).status_code == 429
            # another account has its own budget; unknown accounts are not counted (404, never 429)
            assert (await post(client, "other", "o1")).status_code == 202
            assert {(await post(client, "nope", f"n{i}")).status_code for i in range(8)} == {404}


async def test_retry_after_is_honest(database_url: str, broker: EmbeddedKafka, tmp_path: Path, clock: Clock) -> None:
    settings = channels_settings(database_url, broker, tmp_path, "2/2 seconds")
    with channels_at(settings) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            statuses = [(await post(client, "shop", f"c{i}")).status_code for i in range(2)]
            refused = await post(client, "shop", "c2")
            assert (statuses, refused.status_code) == ([202, 202], 429)
            retry_after = int(refused.headers["retry-after"])
            assert retry_after == 2  # the two counted requests leave the window 2 s after they came
            clock.advance(retry_after - 0.5)
            assert (await post(client, "shop", "c3")).status_code == 429  # not sooner
            clock.advance(0.5 + 0.001)  # a retry comes after the wait (at its very instant they still count)
            assert (await post(client, "shop", "c4")).status_code == 202
