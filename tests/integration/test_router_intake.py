"""A new contact against a real PostgreSQL and Tansu: the wiring (contacts consumer, outbox relay, the profile API).
The decisions themselves (rules, sticky agents) are tested on the handlers: ``tests/service/test_router_intake.py``."""

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from contracts import ROUTING_EVENTS, ContactEvent, Customer, RoutingEvent
from services.router.adapters.orm import contacts
from tests.integration.conftest import ADMIN_TOKEN, ALICE_TOKEN, CONFIG, SUPERVISOR_TOKEN
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

RULES = """\
  sticky: {window_minutes: 60, wait_seconds: 30, key_account_wait_seconds: 45}
  rules:
    - name: refunds
      match: {keywords: [退货, refund]}
      queue: returns
      priority: 55
    - name: key accounts
      match: {tiers: [key_account]}
      queue: presales
      priority: 70
"""


@pytest.fixture
def intake_config(tmp_path: Path) -> Path:
    path = tmp_path / "kefu.yaml"
    path.write_text(CONFIG.replace("  routes:\n", RULES + "  routes:\n", 1), encoding="utf-8")
    return path


def _event(conversation: str, visitor: str, text: str) -> ContactEvent:
    """A first message of ``conversation`` from the customer ``visitor`` (several conversations may share one)."""
    event = contact_event(conversation, text=text)
    return event.model_copy(update={"customer": Customer(platform_id=visitor, language="zh-CN")})


async def _contact_row(database_url: str, contact_id: uuid.UUID) -> Any:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(select(contacts).where(contacts.c.id == contact_id))).mappings().first()
    finally:
        await engine.dispose()


async def _opened(database_url: str, event: ContactEvent) -> Any:
    async def row() -> Any:
        return await _contact_row(database_url, event.event_id)

    return await eventually(row)


async def _queued_event(bootstrap: str, contact_id: uuid.UUID) -> RoutingEvent:
    async def queued() -> RoutingEvent | None:
        records = await read_topic(bootstrap, ROUTING_EVENTS, timeout=1)
        events = [RoutingEvent.model_validate_json(r.value) for r in records]
        return next((e for e in events if e.contact_id == contact_id and e.type == "queued"), None)

    return await eventually(queued)


async def test_a_keyword_places_the_contact_in_the_rules_queue_with_its_priority_and_category(
    database_url: str, broker: EmbeddedKafka, intake_config: Path
) -> None:
    refund, plain = _event("r1", "visitor-r1", "我要退货, refund please"), _event("p1", "visitor-p1", "这款冰箱多少钱")
    async with running(router_settings(database_url, broker, intake_config)):
        await publish_contacts(broker.bootstrap, refund, plain)
        row = await _opened(database_url, refund)
        assert (row["queue_id"], row["priority"], row["category"], row["tier"]) == (
            "returns",
            55,
            "refunds",
            "standard",
        )
        other = await _opened(database_url, plain)
        assert (other["queue_id"], other["priority"], other["category"]) == ("presales", 10, None)
        queued = await _queued_event(broker.bootstrap, refund.event_id)
    assert (queued.queue_id, queued.priority, queued.category) == ("returns", 55, "refunds")
    assert queued.customer_id == row["customer_id"]
    assert queued.customer_tier == "standard"


async def test_the_profile_api_sets_tier_and_tam_and_refuses_what_is_wrong(
    database_url: str, broker: EmbeddedKafka, intake_config: Path
) -> None:
    first = _event("k1", "visitor-k", "你好")
    app = create_app(router_settings(database_url, broker, intake_config))
    async with serving(app) as client:
        await publish_contacts(broker.bootstrap, first)
        customer_id = (await _opened(database_url, first))["customer_id"]
        url = f"/v1/customers/{customer_id}/profile"
        supervisor = {"Authorization": f"Bearer {SUPERVISOR_TOKEN}"}

        before = (await client.get(f"/v1/customers/{customer_id}", headers=supervisor)).json()
        assert (before["tier"], before["owning_tam"]) == ("standard", None)
        changed = await client.put(url, json={"tier": "key_account", "owning_tam": "chen"}, headers=supervisor)
        assert changed.status_code == 200, changed.text
        assert (changed.json()["tier"], changed.json()["owning_tam"]) == ("key_account", "chen")
        shown = (await client.get(f"/v1/customers/{customer_id}", headers=supervisor)).json()
        assert (shown["tier"], shown["owning_tam"]) == ("key_account", "chen")
        as_admin = await client.put(url, json={"tier": "vip"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert (as_admin.status_code, as_admin.json()["owning_tam"]) == (200, None)

        as_agent = await client.put(url, json={"tier": "vip"}, headers={"Authorization": f"Bearer {ALICE_TOKEN}"})
        assert as_agent.status_code == 403
        unknown_agent = await client.put(url, json={"tier": "vip", "owning_tam": "nobody"}, headers=supervisor)
        assert unknown_agent.status_code == 422
        assert unknown_agent.json()["error"] == "unknown_agent"
        assert "nobody" in unknown_agent.json()["detail"]
        bad_tier = await client.put(url, json={"tier": "gold"}, headers=supervisor)
        assert bad_tier.status_code == 422
        assert "tier" in bad_tier.text
        missing = await client.put(f"/v1/customers/{uuid.uuid4()}/profile", json={"tier": "vip"}, headers=supervisor)
        assert (missing.status_code, missing.json()["error"]) == (404, "unknown_customer")
        unchanged = (await client.get(f"/v1/customers/{customer_id}", headers=supervisor)).json()
        assert unchanged["tier"] == "vip"
