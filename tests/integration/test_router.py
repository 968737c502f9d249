"""The router against a real PostgreSQL and a real Kafka-protocol broker. A contact's arrival and its offers
(applied once, joined, expired, abandoned) are decided on the handlers without Kafka:
``tests/service/test_router_offers.py``."""

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from contracts import CONTACTS, ROUTING_EVENTS, ContactEventKind, RoutingEvent, dlq
from kefu import kafka
from services.router import commands
from services.router.adapters import stats as stats_queries
from services.router.adapters.orm import outbox
from services.router.bootstrap import Router
from services.router.domain.model import Presence
from tests.integration.conftest import ADMIN_TOKEN, ALICE_TOKEN, BOB_TOKEN, CONFIG, SUPERVISOR_TOKEN
from tests.integration.support import (
    contact_event,
    eventually,
    publish_contacts,
    read_topic,
    router_settings,
    serving,
)
from tools.assemble import router_app as create_app
from tools.assemble import router_running as running
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration


async def _count(database_url: str, table: object) -> int:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]
    finally:
        await engine.dispose()


def _offers_of(router: Router, agent_id: str) -> list[uuid.UUID]:
    return [o.id for o in router.service.state.offers.values() if o.agent_id == agent_id]


async def test_offer_accept_publishes_routing_events_through_the_outbox(
    database_url: str, broker: EmbeddedKafka, config_path: Path
) -> None:
    event = contact_event("c1")
    async with running(router_settings(database_url, broker, config_path)) as router:
        await publish_contacts(broker.bootstrap, event)

        async def offer() -> list[uuid.UUID]:
            return _offers_of(router, "alice")

        (offer_id,) = await eventually(offer)
        assignment = await commands.accept(router.service, offer_id, "alice")
        assert assignment.agent_id == "alice"
        records = await read_topic(broker.bootstrap, ROUTING_EVENTS, at_least=4)

        async def relayed() -> bool:
            return await _count(database_url, outbox.select().where(outbox.c.published_at.is_(None)).subquery()) == 0

        await eventually(relayed)
    events = [RoutingEvent.model_validate_json(r.value) for r in records]
    assert [e.type for e in events] == ["queued", "offered", "accepted", "assigned"]
    assert {e.contact_id for e in events} == {event.event_id}
    assert {r.key for r in records} == {str(event.event_id).encode()}


async def test_state_is_rebuilt_from_postgres_after_a_restart(
    database_url: str, broker: EmbeddedKafka, config_path: Path
) -> None:
    settings = router_settings(database_url, broker, config_path).model_copy(update={"offer_tick_seconds": 60.0})
    async with running(settings) as router:
        await commands.set_presence(router.service, "alice", Presence.AWAY)
        await publish_contacts(broker.bootstrap, contact_event("c1"), contact_event("c2"))

        async def queued() -> bool:
            return len(router.service.state.waiting) == 2

        await eventually(queued)
        await commands.set_presence(router.service, "alice", Presence.AVAILABLE)
        offers_before = {o.id: o.contact.id for o in router.service.state.offers.values()}
        assert len(offers_before) == 2
    async with running(settings) as restarted:
        state = restarted.service.state
        assert {o.id: o.contact.id for o in state.offers.values()} == offers_before
        assert state.agents["alice"].presence is Presence.AVAILABLE
        assert state.agents["alice"].load.total() == 2
        assert len(state.waiting) == 2


async def test_a_poison_message_is_dead_lettered_and_does_not_block(
    database_url: str, broker: EmbeddedKafka, config_path: Path
) -> None:
    async with running(router_settings(database_url, broker, config_path)) as router:
        producer = kafka.create_producer(broker.bootstrap)
        await producer.start()
        await producer.send_and_wait(CONTACTS, b"{not json", key=b"webchat:shop:c1")
        await producer.stop()
        await publish_contacts(broker.bootstrap, contact_event("c1"))

        async def offered() -> list[uuid.UUID]:
            return _offers_of(router, "alice")

        await eventually(offered)
    (dead,) = await read_topic(broker.bootstrap, dlq(CONTACTS), at_least=1)
    assert dead.value == b"{not json"
    reason = dict(dead.headers)["kefu-dlq-reason"].decode()
    assert "ContactEvent invalid" in reason


SUPERVISOR = {"authorization": f"Bearer {SUPERVISOR_TOKEN}"}
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
AGENT = {
    "alice": {"authorization": f"Bearer {ALICE_TOKEN}"},
    "bob": {"authorization": f"Bearer {BOB_TOKEN}"},
}


async def test_desktop_api_flow_and_errors(database_url: str, broker: EmbeddedKafka, config_path: Path) -> None:
    app = create_app(router_settings(database_url, broker, config_path))
    async with serving(app) as client:
        agents = (await client.get("/v1/agents", headers=SUPERVISOR)).json()
        assert {a["agent_id"]: a["presence"] for a in agents} == {
            "alice": "available",
            "bob": "away",
            "chen": "available",
        }
        changed = await client.put("/v1/agents/bob/status", json={"presence": "available"}, headers=AGENT["bob"])
        assert changed.status_code == 200
        assert changed.json()["presence"] == "available"

        await publish_contacts(broker.bootstrap, contact_event("c1"))

        async def offers() -> list[dict[str, str]]:
            found = (await client.get("/v1/agents/alice/offers", headers=AGENT["alice"])).json()
            found += (await client.get("/v1/agents/bob/offers", headers=AGENT["bob"])).json()
            return list(found)

        (offer,) = await eventually(offers)
        owner = offer["agent_id"]
        other = "bob" if owner == "alice" else "alice"
        accept = f"/v1/offers/{offer['offer_id']}/accept"
        assert (await client.post(accept, headers=AGENT[other])).status_code == 404  # as if it did not exist
        assert (await client.post(accept, headers=SUPERVISOR)).status_code == 403
        accepted = await client.post(accept, headers=AGENT[owner])
        assert accepted.status_code == 200
        assignment = accepted.json()
        assert assignment["contact_id"] == offer["contact_id"]
        again = await client.post(accept, headers=AGENT[owner])
        assert again.status_code == 409
        assert again.json()["error"] == "wrong_state"

        listed = (await client.get(f"/v1/agents/{owner}/assignments", headers=AGENT[owner])).json()
        assert [a["assignment_id"] for a in listed] == [assignment["assignment_id"]]
        shown = await client.get(f"/v1/assignments/{assignment['assignment_id']}", headers=AGENT[owner])
        assert shown.json() == assignment
        assert (
            await client.get(f"/v1/assignments/{assignment['assignment_id']}", headers=AGENT[other])
        ).status_code == 404
        complete = f"/v1/assignments/{assignment['assignment_id']}/complete"
        assert (await client.post(complete, headers=AGENT[other])).status_code == 404
        done = await client.post(complete, headers=AGENT[owner])
        assert done.status_code == 200
        twice = await client.post(complete, headers=SUPERVISOR)
        assert twice.status_code == 404

        for method, path, body, headers, status in [
            ("GET", "/v1/agents/alice", None, {}, 401),
            ("GET", "/v1/agents/alice", None, {"authorization": "Bearer not-a-token"}, 401),
            ("GET", "/v1/agents/alice", None, {"authorization": "Basic YTpi"}, 401),
            ("GET", "/v1/agents", None, AGENT["alice"], 403),
            ("GET", "/v1/agents/bob", None, AGENT["alice"], 404),
            ("GET", "/v1/agents/bob/offers", None, AGENT["alice"], 404),
            ("GET", "/v1/agents/bob/events", None, AGENT["alice"], 404),
            ("PUT", "/v1/agents/bob/status", {"presence": "away"}, AGENT["alice"], 404),
            ("GET", "/v1/agents/nobody", None, SUPERVISOR, 404),
            ("GET", "/v1/agents/nobody/offers", None, SUPERVISOR, 404),
            ("PUT", "/v1/agents/alice/status", {"presence": "sleeping"}, AGENT["alice"], 422),
            ("PUT", "/v1/agents/alice/status", {}, AGENT["alice"], 422),
            ("PUT", "/v1/agents/nobody/status", {"presence": "away"}, SUPERVISOR, 404),
            ("POST", f"/v1/offers/{uuid.uuid4()}/accept", None, AGENT["alice"], 404),
            ("POST", "/v1/offers/not-a-uuid/accept", None, AGENT["alice"], 422),
        ]:
            response = await client.request(method, path, json=body, headers=headers)
            assert response.status_code == status, (method, path, response.text)
            assert response.json()["error"], response.text
            if status == 401:
                assert response.headers["www-authenticate"].startswith("Bearer")
        assert (await client.get("/readyz")).json() == {"ready": True, "checks": {"database": "ok", "broker": "ok"}}
        metrics = (await client.get("/metrics")).text
        assert 'kefu_router_contact_events_total{outcome="opened"} ' in metrics


async def test_identities_link_into_one_customer_across_channels(
    database_url: str, broker: EmbeddedKafka, config_path: Path
) -> None:
    app = create_app(router_settings(database_url, broker, config_path))
    async with serving(app) as client:
        anonymous = contact_event("web-1", text="匿名咨询")
        await publish_contacts(broker.bootstrap, anonymous)

        async def contact() -> dict[str, Any]:
            found = await client.get(f"/v1/contacts/{anonymous.event_id}", headers=SUPERVISOR)
            return dict(found.json()) if found.status_code == 200 else {}

        first = await eventually(contact)
        assert [m["text"] for m in first["messages"]] == ["匿名咨询"]
        assert [e["type"] for e in first["events"]][:2] == ["queued", "offered"]
        customer_id = first["customer_id"]

        # the visitor logs in on the same conversation: their member id now names the customer
        login = contact_event("web-1", text="我登录了")
        login = login.model_copy(update={"customer": login.customer.model_copy(update={"external_id": "member-7"})})
        # the same member writes from another device (another anonymous visitor id)
        other = contact_event("web-2", text="换个设备")
        other = other.model_copy(update={"customer": other.customer.model_copy(update={"external_id": "member-7"})})
        await publish_contacts(broker.bootstrap, login, other)

        async def linked() -> dict[str, Any]:
            # whichever record survives the merge, the first contact now belongs to it
            owner = (await contact())["customer_id"]
            found = await client.get(f"/v1/customers/{owner}", headers=SUPERVISOR)
            return dict(found.json()) if found.status_code == 200 and len(found.json()["identities"]) == 2 else {}

        customer = await eventually(linked)
        customer_id = customer["customer_id"]
        assert customer["external_id"] == "member-7"
        assert {i["platform_id"] for i in customer["identities"]} == {"visitor-web-1", "visitor-web-2"}
        assert len(customer["contacts"]) == 2

        # a supervisor links the customer's WeChat identity by hand
        link = {"channel": "wechat", "platform_id": "oX-openid-1"}
        identities = f"/v1/customers/{customer_id}/identities"
        assert (await client.post(identities, json=link, headers=AGENT["alice"])).status_code == 403
        response = await client.post(identities, json=link, headers=SUPERVISOR)
        assert response.status_code == 200
        assert {"channel": "wechat", "platform_id": "oX-openid-1"} in response.json()["identities"]

        for method, path, body, status in [
            ("GET", f"/v1/customers/{uuid.uuid4()}", None, 404),
            ("GET", f"/v1/contacts/{uuid.uuid4()}", None, 404),
            ("POST", f"/v1/customers/{uuid.uuid4()}/identities", {"channel": "wechat", "platform_id": "oX-open"}, 404),
            ("POST", f"/v1/customers/{customer_id}/identities", {"channel": "fax", "platform_id": "x"}, 422),
            ("POST", f"/v1/customers/{customer_id}/identities", {"channel": "wechat"}, 422),
        ]:
            answer = await client.request(method, path, json=body, headers=SUPERVISOR)
            assert answer.status_code == status, (path, answer.text)


async def test_queue_statistics_for_the_wallboard(
    database_url: str, broker: EmbeddedKafka, config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the history of a queue is read from PostgreSQL, what waits now from the state, which a change reaches only
    # after its commit: a slow history read widens the window in which the two could disagree (a contact waiting
    # that the history counts as abandoned: 2 == 1 below, once under load)
    window = stats_queries.window

    async def slow_window(*args: Any, **kwargs: Any) -> dict[str, Any]:
        await asyncio.sleep(0.2)
        return await window(*args, **kwargs)

    monkeypatch.setattr(stats_queries, "window", slow_window)
    settings = router_settings(database_url, broker, config_path).model_copy(update={"offer_tick_seconds": 60.0})
    app = create_app(settings)
    async with serving(app) as client:
        await publish_contacts(
            broker.bootstrap, contact_event("answered"), contact_event("left"), contact_event("waits")
        )

        async def offered() -> list[dict[str, Any]]:
            found = (await client.get("/v1/agents/alice/offers", headers=AGENT["alice"])).json()
            return list(found) if len(found) == 2 else []  # alice has two chat slots

        first, second = await eventually(offered)
        accepted = await client.post(f"/v1/offers/{first['offer_id']}/accept", headers=AGENT["alice"])
        assignment = accepted.json()["assignment_id"]
        await client.post(f"/v1/assignments/{assignment}/complete", headers=AGENT["alice"])
        hangup = contact_event(second["conversation_key"].rsplit(":", 1)[1])
        await publish_contacts(broker.bootstrap, hangup.model_copy(update={"kind": ContactEventKind.ABANDONED}))

        async def settled() -> dict[str, Any]:
            found = (await client.get("/v1/queues/presales/stats", headers=AGENT["alice"])).json()
            return dict(found) if found["abandoned"] == 1 and found["answered"] == 1 else {}

        stats = await eventually(settled)
        assert stats["waiting"] == 1  # the third contact, now offered to alice's freed slot
        assert stats["abandonment_percent"] == 50.0
        assert stats["asa_seconds"] is not None and stats["asa_seconds"] >= 0
        assert stats["service_level"] == {"answer_within_seconds": 20, "percent": 50.0}
        assert stats["aht_seconds"] is not None
        assert stats["eligible_agents"]["available"] == 1  # alice; bob is away, chen lacks presales
        queues = {q["queue_id"]: q for q in (await client.get("/v1/queues", headers=SUPERVISOR)).json()}
        assert set(queues) == {"presales", "returns"}
        assert queues["presales"]["waiting"] == 1

        async def caught_up() -> dict[str, str] | None:  # every record applied, its offset committed after
            headers = (await client.get("/v1/queues", headers=SUPERVISOR)).headers
            backlog = {name: headers[name] for name in ("Kefu-Contacts-Backlog", "Kefu-Commands-Backlog")}
            return backlog if set(backlog.values()) == {"0"} else None

        assert await eventually(caught_up) == {"Kefu-Contacts-Backlog": "0", "Kefu-Commands-Backlog": "0"}
        assert (await client.get("/v1/queues/nope/stats", headers=SUPERVISOR)).status_code == 404
        assert (await client.get("/v1/queues/presales/stats")).status_code == 401
        bad = await client.get("/v1/queues/presales/stats", params={"window_minutes": 0}, headers=SUPERVISOR)
        assert bad.status_code == 422


async def test_contacts_nobody_can_serve_are_reported(
    database_url: str, broker: EmbeddedKafka, config_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # an admin takes web chat away from the only presales agents: presales web chats can now never be served
    settings = router_settings(database_url, broker, config_path).model_copy(update={"offer_tick_seconds": 60.0})
    async with serving(create_app(settings)) as client:
        for agent_id, skills in (("alice", {"presales": 4}), ("bob", {"presales": 2})):
            body = {"name": agent_id, "groups": ["tier1"], "skills": skills, "capacity": {"phone": 1}}
            assert (await client.put(f"/v1/agents/{agent_id}", json=body, headers=ADMIN)).status_code == 200
        with caplog.at_level(logging.WARNING, logger="services.router.service"):
            await publish_contacts(broker.bootstrap, contact_event("lost-1"), contact_event("lost-2"))

            async def reported() -> dict[str, Any]:
                found = (await client.get("/v1/queues/presales/stats", headers=SUPERVISOR)).json()
                return dict(found) if found["waiting"] == 2 else {}

            stats = await eventually(reported)
        assert stats["unservable"] == 2
        assert stats["channels"]["webchat"]["unservable"] == 2
        assert stats["free_slots"] == 0
        assert stats["estimated_wait_seconds"] is None  # unknown, not 0
        warnings = [r for r in caplog.records if "no agent can serve" in r.getMessage()]
        assert len(warnings) == 1, "said once per queue and channel"
        assert "'presales'" in warnings[0].getMessage() and "webchat" in warnings[0].getMessage()
        metrics = (await client.get("/metrics")).text
        assert 'kefu_router_unservable_contacts{channel="webchat",queue="presales"} 2.0' in metrics


async def test_agents_are_managed_through_the_api(database_url: str, broker: EmbeddedKafka, config_path: Path) -> None:
    settings = router_settings(database_url, broker, config_path).model_copy(update={"offer_tick_seconds": 60.0})
    async with serving(create_app(settings)) as client:
        await client.put("/v1/agents/alice/status", json={"presence": "away"}, headers=AGENT["alice"])
        await publish_contacts(broker.bootstrap, contact_event("presales-1"))

        async def queued() -> bool:
            found = (await client.get("/v1/queues", headers=SUPERVISOR)).json()
            return any(q["waiting"] for q in found)

        await eventually(queued)
        body = {"name": "Dora", "skills": {"presales": 3}, "capacity": {"webchat": 2}, "initial_presence": "available"}
        assert (await client.put("/v1/agents/dora", json=body, headers=SUPERVISOR)).status_code == 403
        created = await client.put("/v1/agents/dora", json=body, headers=ADMIN)
        assert created.status_code == 200, created.text
        assert created.json()["presence"] == "available"
        # the new agent takes the waiting contact at once
        offers = (await client.get("/v1/agents/dora/offers", headers=SUPERVISOR)).json()
        assert [o["agent_id"] for o in offers] == ["dora"]
        updated = await client.put("/v1/agents/dora", json={**body, "name": "Dora Chen"}, headers=ADMIN)
        assert updated.json()["name"] == "Dora Chen"
        assert updated.json()["load"] == {"webchat": 1}
        bad = await client.put("/v1/agents/dora", json={**body, "skills": {"presales": 9}}, headers=ADMIN)
        assert bad.status_code == 422
        assert "proficiency" in bad.json()["detail"]
    async with running(settings) as restarted:
        assert restarted.service.state.agents["dora"].name == "Dora Chen"


async def test_the_routing_configuration_is_versioned_and_changed_through_the_api(
    database_url: str, broker: EmbeddedKafka, config_path: Path
) -> None:
    settings = router_settings(database_url, broker, config_path).model_copy(update={"offer_tick_seconds": 60.0})
    file_text = CONFIG
    routing_only = "routing:" + file_text.split("routing:", 1)[1].split("\nauth:", 1)[0]
    to_returns = routing_only.replace(
        "{channel: webchat, account: shop, queue: presales}", "{channel: webchat, account: shop, queue: returns}"
    )
    assert to_returns != routing_only
    yaml_headers = {**ADMIN, "content-type": "application/yaml"}
    async with serving(create_app(settings)) as client:
        first = (await client.get("/v1/config", headers=SUPERVISOR)).json()
        assert (first["version"], first["source"]) == (1, "file")

        bad = routing_only.replace("channels: [webchat]", "channels: [fax]", 1)
        refused = await client.put("/v1/config", content=bad, headers=yaml_headers)
        assert refused.status_code == 422
        assert "request body:" in refused.json()["detail"] and "channels" in refused.json()["detail"]
        assert (
            await client.put(
                "/v1/config", content=to_returns, headers={**SUPERVISOR, "content-type": "application/yaml"}
            )
        ).status_code == 403
        assert (
            await client.put("/v1/config", content=to_returns, headers={**ADMIN, "content-type": "text/plain"})
        ).status_code == 415

        applied = await client.put("/v1/config", content=to_returns, headers=yaml_headers)
        assert applied.status_code == 200, applied.text
        assert applied.json()["version"] == 2
        await publish_contacts(broker.bootstrap, contact_event("after-change"))

        async def routed() -> list[dict[str, Any]]:
            return list((await client.get("/v1/agents/chen/offers", headers=SUPERVISOR)).json())

        (offer,) = await eventually(routed)  # chen is the only available agent skilled in returns
        assert offer["queue_id"] == "returns"
        without_returns = (
            to_returns.split("    - {id: returns", 1)[0] + "  agents:" + to_returns.split("  agents:", 1)[1]
        )
        without_returns = without_returns.replace("queue: returns}", "queue: presales}")
        busy = await client.put("/v1/config", content=without_returns, headers=yaml_headers)
        assert busy.status_code == 409, busy.text
    async with running(settings) as restarted:
        # the file did not change, so the version applied through the API survives the restart
        assert restarted.service.config_version == 2
        assert "returns" in restarted.service.state.queues
