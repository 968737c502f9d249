"""The contracts: committed JSON Schema files match the models; events are immutable and round-trip."""

import json
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from contracts import ALL_TOPICS, CONTACTS, Channel, ContactEvent, Customer, Message, RoutingEvent, dlq, schemas


def test_committed_schemas_match_the_models() -> None:
    rendered = schemas.render()
    committed = {path.name: path.read_text(encoding="utf-8") for path in schemas.SCHEMA_DIR.glob("*.json")}
    assert committed.keys() == rendered.keys(), "run `kefu contracts` to regenerate contracts/schemas/"
    for name, text in rendered.items():
        assert committed[name] == text, f"{name} drifted from its model: run `kefu contracts`"


def test_every_field_is_documented() -> None:
    for name, text in schemas.render().items():
        document = json.loads(text)
        for definition in [document, *document.get("$defs", {}).values()]:
            for field, spec in definition.get("properties", {}).items():
                assert spec.get("description"), f"{name}: {definition.get('title')}.{field} has no description"


def _contact() -> ContactEvent:
    now = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    return ContactEvent(
        event_id=uuid.uuid4(),
        channel=Channel.WEBCHAT,
        account_id="demo",
        conversation_key="webchat:demo:c1",
        dedup_key="msg_1",
        customer=Customer(platform_id="v1", display_name="张伟"),
        message=Message(text="你好"),
        occurred_at=now,
        received_at=now,
    )


def test_contact_event_round_trips_through_json() -> None:
    event = _contact()
    assert ContactEvent.model_validate_json(event.model_dump_json()) == event


def test_events_are_immutable_and_strict() -> None:
    event = _contact()
    with pytest.raises(ValidationError):
        event.account_id = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        ContactEvent.model_validate({**event.model_dump(), "surprise": 1})


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        RoutingEvent.model_validate(
            {
                "event_id": str(uuid.uuid4()),
                "type": "queued",
                "occurred_at": "2026-11-22T09:30:00",
                "contact_id": str(uuid.uuid4()),
                "conversation_key": "k",
                "channel": "webchat",
                "queue_id": "q",
            }
        )


def test_every_topic_has_a_dead_letter_sibling() -> None:
    assert dlq(CONTACTS) == "kefu.contacts.v1.dlq"
    primaries = [t for t in ALL_TOPICS if not t.endswith(".dlq")]
    assert sorted(ALL_TOPICS) == sorted(primaries + [dlq(t) for t in primaries])
    assert set(primaries) == {
        "kefu.contacts.v1",
        "kefu.routing.events.v1",
        "kefu.routing.commands.v1",
        "kefu.escalations.v1",
    }
