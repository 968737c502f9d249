"""The agent desktop's event stream: ids, resuming with Last-Event-ID, heartbeats, resets, catching up."""

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from services.router.adapters import feed_store
from services.router.adapters.feed import AgentFeed, FeedItem, Notice
from services.router.adapters.late_writes import LateWrites
from services.router.config import RouterSettings
from services.router.domain.config import parse_routing
from services.router.entrypoints import desktop_stream
from services.router.service import RoutingService
from tests.integration.conftest import ALICE_TOKEN, CONFIG
from tests.integration.support import (
    contact_event,
    eventually,
    free_port,
    publish_contacts,
    router_settings,
    server_in_thread,
)
from tools.assemble import router_app as create_app
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration

ALICE = {"authorization": f"Bearer {ALICE_TOKEN}"}
EVENTS = "/v1/agents/alice/events"


@dataclass(frozen=True)
class Sse:
    """One thing read from the stream: an event (with its id) or a comment line."""

    event: str | None = None
    data: Any = None
    id: str | None = None
    comment: str | None = None


class Desktop:
    """An open event stream, read one event (or comment) at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, *, timeout: float = 10.0) -> Sse:
        """The next event or comment; an event's fields are those of its lines up to the blank line."""
        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if line.startswith(":"):
                    return Sse(comment=line[1:].strip())
                if line:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
                elif "event" in fields:
                    return Sse(fields["event"], json.loads(fields.get("data", "null")), fields.get("id"))
                else:
                    fields = {}  # a retry: line on its own
        raise AssertionError("the stream ended")

    async def event(self, *, timeout: float = 10.0) -> Sse:
        """The next event, skipping heartbeats."""
        item = await self.next(timeout=timeout)
        while item.comment is not None:  # a heartbeat
            item = await self.next(timeout=timeout)
        return item

    async def until(self, name: str) -> list[Sse]:
        """Events up to and including the next ``name``."""
        seen = [await self.event()]
        while seen[-1].event != name:
            seen.append(await self.event())
        return seen


@contextlib.asynccontextmanager
async def desktop(client: httpx.AsyncClient, **headers: str) -> AsyncIterator[Desktop]:
    async with client.stream("GET", EVENTS, headers={**ALICE, **headers}) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Desktop(response)


@pytest.fixture
def config_path(config_path: Path) -> Path:
    """The tests' configuration, with offers that wait for the test rather than expire under it."""
    config_path.write_text(CONFIG.replace("offer_timeout_seconds: 1", "offer_timeout_seconds: 60"), encoding="utf-8")
    return config_path


@contextlib.contextmanager
def router_at(settings: RouterSettings) -> Iterator[str]:
    """The router served over real HTTP (an in-process client would buffer the endless stream)."""
    with server_in_thread(create_app(settings), free_port(), lifespan="on", name="router") as url:
        yield url


def ids(events: list[Sse]) -> list[int]:
    return [int(e.id) for e in events if e.id is not None]


async def messages_of(client: httpx.AsyncClient, contact_id: str) -> list[str]:
    contact = (await client.get(f"/v1/contacts/{contact_id}", headers=ALICE)).json()
    return [m["text"] for m in contact["messages"]]


async def test_a_desktop_that_reconnects_with_last_event_id_gets_what_it_missed_then_goes_on_live(
    database_url: str, broker: EmbeddedKafka, config_path: Path
) -> None:
    with router_at(router_settings(database_url, broker, config_path)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            async with desktop(client) as first:
                await publish_contacts(broker.bootstrap, contact_event("c1", text="我想退货"))
                offered = await first.event()
                assert offered.event == "offer.created"
                accepted = await client.post(f"/v1/offers/{offered.data['offer_id']}/accept", headers=ALICE)
                assert accepted.status_code == 200
                seen = [offered, *await first.until("assignment.created")]
            assert len(ids(seen)) == len(seen), "every event has an id"
            assert ids(seen) == sorted(set(ids(seen))), "ids increase"

            # the customer writes while the desktop is reconnecting
            contact_id = offered.data["contact_id"]
            await publish_contacts(broker.bootstrap, contact_event("c1", text="还在吗?"))
            assert await eventually(lambda: _has(client, contact_id, "还在吗?"))

            async with desktop(client, **{"last-event-id": seen[-1].id or ""}) as again:
                missed = await again.event()
                assert (missed.event, missed.data["text"]) == ("assignment.message", "还在吗?")
                assert int(missed.id or 0) > ids(seen)[-1]
                assignment_id = accepted.json()["assignment_id"]
                done = await client.post(f"/v1/assignments/{assignment_id}/complete", headers=ALICE)
                assert done.status_code == 200
                live = await again.until("assignment.closed")
            # nothing replayed twice, nothing skipped: the message once, then the completion
            assert [e.event for e in live][-1] == "assignment.closed"
            assert all(e.event != "assignment.message" for e in live)
            assert ids([missed, *live]) == sorted(set(ids([missed, *live])))


async def _has(client: httpx.AsyncClient, contact_id: str, text: str) -> bool:
    return text in await messages_of(client, contact_id)


async def test_after_a_restart_the_feed_resumes_beats_when_idle_and_resets_when_too_far_behind(
    database_url: str, broker: EmbeddedKafka, config_path: Path
) -> None:
    settings = router_settings(database_url, broker, config_path)
    with router_at(settings) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client, desktop(client) as first:
            await publish_contacts(broker.bootstrap, contact_event("c2", text="在吗"))
            offered = await first.event()
            assert offered.event == "offer.created" and offered.id is not None
            before = int(offered.id) - 1

    # a consumer group of its own: rejoining the old one waits for the broker to drop the stopped member
    restarted = {"consumer_group": f"router-{uuid.uuid4().hex[:8]}", "sse_heartbeat_seconds": 0.05}
    with router_at(settings.model_copy(update=restarted)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            # the query parameter stands in for the header (for clients that cannot set it)
            async with client.stream("GET", EVENTS, params={"last_event_id": before}, headers=ALICE) as response:
                replayed = await Desktop(response).event()
            assert (replayed.event, replayed.id) == ("offer.created", offered.id)
            assert replayed.data["offer_id"] == offered.data["offer_id"]

            engine = create_async_engine(database_url)
            try:
                async with engine.begin() as conn:
                    await feed_store.prune(conn, keep_seconds=0)
            finally:
                await engine.dispose()

            async with desktop(client, **{"last-event-id": str(before)}) as behind:
                reset = await behind.event()
                assert reset.event == "feed.reset"
                assert reset.data["reason"] == "pruned"
                assert set(reset.data["reread"]) == {"/v1/agents/alice/offers", "/v1/agents/alice/assignments"}
                # then the stream starts over as for a new desktop: the pending offers now
                pending = await behind.event()
                assert (pending.event, pending.data["offer_id"]) == ("offer.created", offered.data["offer_id"])
                assert reset.id is not None and pending.id == reset.id

            async with desktop(client, **{"last-event-id": reset.id}) as caught_up:
                beats = [await caught_up.next() for _ in range(3)]  # nothing happens: heartbeats (every 0.05 s)
                assert all(b.comment == "keep-alive" for b in beats), beats
                await publish_contacts(broker.bootstrap, contact_event("c3", text="你好"))
                nothing_missed = await caught_up.event()
                assert nothing_missed.event == "offer.created" and int(nothing_missed.id or 0) > int(reset.id)

            async with desktop(client, **{"last-event-id": str(10**12)}) as unknown:
                assert (await unknown.event()).data["reason"] == "unknown_id"

            for bad in ("abc", "-1", str(2**63)):
                refused = await client.get(EVENTS, headers={**ALICE, "last-event-id": bad})
                assert refused.status_code == 422, refused.text
                assert refused.json()["error"] == "invalid_request"


async def test_a_desktop_that_falls_behind_the_fan_out_catches_up_from_the_table_in_order(database_url: str) -> None:
    engine = create_async_engine(database_url)
    feed = AgentFeed(backlog=2)
    config = parse_routing(CONFIG, Path("kefu.yaml"))
    service = RoutingService(engine=engine, config=config, feed=feed)
    stream = desktop_stream.events("alice", 0, service=service, feed=feed, engine=engine)
    try:
        opening = await anext(stream)  # subscribed now, and nothing was missed
        assert (opening.retry, opening.event) == (2000, None)

        async def commit(*texts: str) -> list[FeedItem]:
            async with engine.begin() as conn:
                later = LateWrites()
                later.notices += [Notice("alice", "assignment.message", {"text": t}) for t in texts]
                await later.flush(conn)
            feed.publish(later.written)
            return later.written

        burst = await commit(*(f"m{i}" for i in range(5)))  # more than the fan-out holds for one desktop
        caught_up = [await anext(stream) for _ in burst]
        assert [json.loads(str(e.data))["text"] for e in caught_up] == [f"m{i}" for i in range(5)]
        assert [e.id for e in caught_up] == [str(item.id) for item in burst]

        feed.publish(burst[1:2])  # an item already sent (as when replay and live overlap) is not sent again
        (after,) = await commit("m5")
        following = await anext(stream)
        assert (following.id, json.loads(str(following.data))["text"]) == (str(after.id), "m5")
    finally:
        await stream.aclose()
        await engine.dispose()
