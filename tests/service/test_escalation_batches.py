"""A fetch's records applied together (``contact_messages``, ``routing_steps``: one transaction, the facts read once,
written once, the timers written together) leave the database as applying them one by one does (``contact_message``,
``routing_step``: a transaction each): over generated sequences of messages and routing steps of contacts sharing
customers and conversations, with redeliveries, every trigger of a policy firing, time moving between fetches and the
timers due by then fired. Ids drawn at random (cases, events, timers) are left out of the comparison."""

import json
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import kefu.batch
from contracts import Channel, ContactEvent, Customer, Message, RoutingEvent, RoutingEventType
from kefu import db
from services.escalation.adapters.ledger import Ledger
from services.escalation.adapters.orm import (
    case_audit,
    cases,
    contact_facts,
    contact_messages,
    notifications,
    outbox,
    routing_events,
    timers,
)
from services.escalation.domain.policy import EscalationPolicy
from services.escalation.service import EscalationService
from tests.service.conftest import Clock, fire_due
from tools.embedded import EmbeddedPostgres

pytestmark = pytest.mark.service

POLICY = """
escalation:
  targets:
    engineers: {group: engineers, queue: technical, priority: 70,
                notify: [{name: oncall, url: "http://127.0.0.1:9/hooks", secret: KEFU_TEST_WEBHOOK}]}
    tam: {group: tam, fallback_group: tam, queue: key-accounts, priority: 80}
    supervisors: {group: supervisors, queue: complaints, priority: 60,
                  notify: [{name: leads, url: "http://127.0.0.1:9/hooks", secret: KEFU_TEST_WEBHOOK}]}
    crisis: {group: crisis, queue: crisis, priority: 100,
             notify: [{name: crisis-room, url: "http://127.0.0.1:9/hooks", secret: KEFU_TEST_WEBHOOK}]}
  levels:
    engineers: {ack_timeout_seconds: 120, next: supervisors}
    tam: {ack_timeout_seconds: 90, next: supervisors}
    supervisors: {ack_timeout_seconds: 60, next: crisis}
    crisis: {ack_timeout_seconds: 60}
  triggers:
    sla:
      target: supervisors
      warn_at_percent: 50
      clocks:
        - {tier: vip, first_response_seconds: 40, next_response_seconds: 60, resolution_seconds: 400}
        - {first_response_seconds: 90, next_response_seconds: 120, resolution_seconds: 900}
    key_account: {target: tam, hold_minutes: 1}
    technical: {target: engineers, categories: [technical], keywords: [error code], max_transfers: 2,
                unresolved_minutes: 4}
    crisis:
      target: crisis
      lexicon:
        media: {terms: [记者, journalist]}
    repeat_contact: {target: supervisors, contacts: 2, within_hours: 1}
"""
TEXTS = ("你好", "where is my order?", "error code E3", "I will call a journalist", "好的")
Record = ContactEvent | RoutingEvent


@dataclass
class Fetch:
    """Records of one topic fetched together, applied after ``advance`` seconds (and, with ``fire``, the timers due
    by then: without, the records find the time passed before the timer runner does)."""

    advance: float
    fire: bool
    records: list[Record]


Step = tuple[str, str, dict[str, Any], int]  # topic, message text or routing type, the contact's fields, contact


def _script(rng: random.Random, contact: int, customer: int, conversation: str) -> list[Step]:
    """One contact's records in the order its topics carry them: ("message", text) and ("routing", type, fields)."""
    routed = ["queued", "offered"]
    routed += rng.choice([["accepted", "assigned"], ["declined", "offered", "accepted", "assigned"], []])
    if routed[-1] == "assigned" and rng.random() < 0.5:
        routed += ["transferred", "requeued", "offered", "accepted", "assigned"] * rng.randint(1, 2)
    routed.append(rng.choice(["completed", "abandoned", "closed", ""]))
    steps: list[tuple[str, str]] = [("routing", kind) for kind in routed if kind]
    for _ in range(rng.randint(1, 3)):
        steps.insert(rng.randint(0, len(steps)), ("message", rng.choice(TEXTS)))
    steps.insert(0, ("message", rng.choice(TEXTS)))
    tier = rng.choice(["standard", "standard", "vip", "key_account"])
    fields = {"customer_id": uuid.UUID(int=customer + 1), "customer_tier": tier, "conversation": conversation}
    fields["category"] = "technical" if rng.random() < 0.2 else None
    fields["owning_tam"] = "chen" if tier == "key_account" else None
    return [(what, arg, fields, contact) for what, arg in steps]


def plan(seed: int, start: datetime) -> list[Fetch]:
    """Six contacts of three customers (two on one conversation, one after the other), their records interleaved,
    cut into fetches of one topic each, some records delivered twice."""
    rng = random.Random(seed)  # noqa: S311 - a workload, not a secret
    scripts = [_script(rng, n, n % 3, f"conv-{min(n, 4)}") for n in range(6)]
    order: list[Step] = []
    while any(scripts):
        lane = rng.choice([s for s in scripts if s])
        order.append(lane.pop(0))
    fetches: list[Fetch] = []
    now = start
    contact_ids: dict[int, uuid.UUID] = {}
    seen: list[Record] = []
    for what, arg, fields, contact in order:
        if not fetches or rng.random() < 0.25 or _topic(fetches[-1].records[0]) != what:
            fetches.append(Fetch(rng.choice([0, 0, 5, 30, 70]), rng.random() < 0.5, []))
            now += timedelta(seconds=fetches[-1].advance)
        record = _record(what, arg, fields, contact, contact_ids, now)
        fetches[-1].records.append(record)
        seen.append(record)
        if rng.random() < 0.1:  # a redelivery, later in the same topic
            again = rng.choice(seen)
            if _topic(again) == what:
                fetches[-1].records.append(again)
    return fetches


def _topic(record: Record) -> str:
    return "message" if isinstance(record, ContactEvent) else "routing"


def _record(
    what: str, arg: str, fields: dict[str, Any], contact: int, ids: dict[int, uuid.UUID], now: datetime
) -> Record:
    key = f"webchat:shop:{fields['conversation']}"
    if what == "message":
        event = ContactEvent(
            event_id=uuid.uuid4(),
            channel=Channel.WEBCHAT,
            account_id="shop",
            conversation_key=key,
            dedup_key=uuid.uuid4().hex,
            customer=Customer(platform_id=f"visitor-{fields['customer_id']}"),
            message=Message(text=arg),
            occurred_at=now,
            received_at=now,
        )
        ids.setdefault(contact, event.event_id)  # the router opens the contact with its first message's id
        return event
    kind = RoutingEventType(arg)
    return RoutingEvent(
        event_id=uuid.uuid4(),
        type=kind,
        occurred_at=now,
        contact_id=ids[contact],
        conversation_key=key,
        channel=Channel.WEBCHAT,
        queue_id="presales",
        agent_id=None if kind in (RoutingEventType.QUEUED, RoutingEventType.REQUEUED) else "alice",
        assignment_id=uuid.uuid4() if kind is RoutingEventType.ASSIGNED else None,
        customer_id=fields["customer_id"],
        customer_tier=fields["customer_tier"],
        owning_tam=fields["owning_tam"],
        category=fields["category"],
    )


async def apply(url: str, fetches: list[Fetch], start: datetime, *, batched: bool) -> dict[str, Any]:
    """Apply ``fetches`` on a fresh database at ``url``, a fetch at a time or a record at a time; what it holds."""
    engine = db.create_engine(url)
    clock = Clock(start)
    policy = EscalationPolicy.model_validate(yaml.safe_load(POLICY)["escalation"])
    service = EscalationService(engine, policy, clock=clock)
    try:
        for fetch in fetches:
            clock.advance(fetch.advance)
            if fetch.fire:
                await fire_due(engine, service.timer_due, clock)
            messages = [r for r in fetch.records if isinstance(r, ContactEvent)]
            steps = [r for r in fetch.records if isinstance(r, RoutingEvent)]
            if batched:
                await (service.contact_messages(messages) if messages else service.routing_steps(steps))
            else:
                for record in fetch.records:
                    await (
                        service.contact_message(record)
                        if isinstance(record, ContactEvent)
                        else service.routing_step(record)
                    )
        clock.advance(600)
        await fire_due(engine, service.timer_due, clock)
        return await held(engine)
    finally:
        await engine.dispose()


async def held(engine: AsyncEngine) -> dict[str, Any]:
    """What the database holds, less what is drawn at random or stamped by the database's own clock."""
    async with engine.connect() as conn:
        case_rows = (await conn.execute(select(cases))).mappings().all()
        named = {str(c["id"]): f"case {c['contact_id']}/{c['trigger']}" for c in case_rows}

        def rows(query: Any, *leave_out: str) -> list[str]:
            return sorted(
                _named(json.dumps({k: v for k, v in r.items() if k not in leave_out}, default=str), named)
                for r in query
            )

        out: dict[str, Any] = {
            "facts": rows((await conn.execute(select(contact_facts))).mappings(), "updated_at"),
            "messages": rows((await conn.execute(select(contact_messages))).mappings()),
            "routing": rows((await conn.execute(select(routing_events))).mappings(), "received_at"),
            "cases": rows(case_rows, "id"),
            "audit": rows((await conn.execute(select(case_audit))).mappings(), "id"),
            "notifications": rows(
                (await conn.execute(select(notifications))).mappings(), "id", "created_at", "next_attempt_at"
            ),
        }
        timer_rows = (await conn.execute(select(timers))).mappings().all()
        out["timers"] = rows(
            ({**r, "cancelled_at": r["cancelled_at"] is not None} for r in timer_rows), "id", "created_at"
        )
        published = await conn.execute(select(outbox.c.key, outbox.c.topic, outbox.c.payload).order_by(outbox.c.id))
        by_key: dict[str, list[str]] = {}
        for key, topic, payload in published:  # each key's events in the order they are published
            body = {k: v for k, v in json.loads(payload).items() if k not in ("event_id", "command_id")}
            by_key.setdefault(key, []).append(_named(f"{topic} {json.dumps(body, sort_keys=True)}", named))
        out["outbox"] = by_key
    return out


def _named(value: str, names: dict[str, str]) -> str:
    for case_id, name in names.items():
        value = value.replace(case_id, name)
    return value


@pytest.fixture
async def two_databases(postgres: EmbeddedPostgres, migrated_template: str) -> AsyncIterator[tuple[str, str]]:
    admin = create_async_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    names = [f"kefu_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    async with admin.connect() as conn:
        for name in names:
            await conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_template}"'))
    try:
        yield postgres.url(names[0]), postgres.url(names[1])
    finally:
        async with admin.connect() as conn:
            for name in names:
                await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        await admin.dispose()


def held_past_the_hold(start: datetime) -> list[Fetch]:
    """A key-account contact queued and offered, then accepted and assigned in one fetch once its hold is over (the
    timer not fired yet): the key-account case opens at ``accepted``, its command assuming the assignment seen by
    then (none), not the one the fetch's ``assigned`` brings after it."""
    fields = {"customer_id": uuid.UUID(int=7), "customer_tier": "key_account", "conversation": "held"}
    fields |= {"category": None, "owning_tam": "chen"}
    ids: dict[int, uuid.UUID] = {}
    first = _record("message", "你好", fields, 0, ids, start)
    queued = [_record("routing", kind, fields, 0, ids, start) for kind in ("queued", "offered")]
    later = start + timedelta(seconds=70)
    answered = [_record("routing", kind, fields, 0, ids, later) for kind in ("accepted", "assigned")]
    return [Fetch(0, True, [first]), Fetch(0, True, queued), Fetch(70, False, answered)]


@pytest.mark.parametrize(
    ("seed", "savepoints"),
    [(0, False), (1, False), (2, False), (3, False), (4, True), (5, True), ("held", False), ("held", True)],
)
async def test_a_fetch_applied_together_leaves_what_its_records_applied_one_by_one_leave(
    seed: int | str, savepoints: bool, two_databases: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kefu.batch, "SAVEPOINTS", savepoints)  # a step each record, in a savepoint or not
    start = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    fetches = plan(seed, start) if isinstance(seed, int) else held_past_the_hold(start)
    alone, together = two_databases
    expected = await apply(alone, fetches, start, batched=False)
    assert await apply(together, fetches, start, batched=True) == expected
    assert expected["cases"], "the sequence fired no trigger: it tests too little"


async def test_fired_triggers_of_any_spelling_are_written_back_as_they_are(
    two_databases: tuple[str, str],
) -> None:
    """The write-back binds each row's fired triggers as an array's text (``adapters.unnest.array_literal``): quotes,
    backslashes, commas, braces and spaces in a name come back as they were."""
    names = ['manual."quoted"', "back\\slash", "a,b", "{braces}", "two words", "", "NULL"]
    engine = db.create_engine(two_databases[0])
    try:
        contact_id = uuid.uuid4()
        async with engine.begin() as conn:
            ledger = Ledger(conn)
            row = await ledger.ensure(contact_id, "conv", datetime(2026, 11, 30, tzinfo=UTC), None)
            ledger.change(row, fired=names)
            await ledger.flush()
        async with engine.connect() as conn:
            query = select(contact_facts.c.fired).where(contact_facts.c.contact_id == contact_id)
            assert (await conn.execute(query)).scalar() == names
    finally:
        await engine.dispose()
