"""``kefu dlq list`` and ``kefu dlq replay`` on a real Tansu broker: dead letters are listed by position, event id
and reason (never their content), and chosen ones go back to their topic and are applied once the cause is fixed."""

import asyncio
import json

import pytest

from contracts import CONTACTS, ContactEvent, Message
from tests.integration.support import contact_event, eventually, publish_contacts, read_topic
from tests.integration.test_consume import consuming
from tools import cli
from tools.embedded import EmbeddedKafka


async def kefu(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the ``kefu`` command (it runs its own event loop, so in a thread); its exit code, stdout and stderr."""
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


pytestmark = pytest.mark.integration


async def test_dead_letters_are_listed_without_their_content_and_replayed_after_a_fix(
    broker: EmbeddedKafka, capsys: pytest.CaptureFixture[str]
) -> None:
    poisons = [contact_event(f"poison-{i}", text=f"secret complaint {i}") for i in range(3)]
    fixed = False
    applied: list[str] = []

    async def handler(event: ContactEvent) -> None:
        if "secret" in event.message.text and not fixed:
            Message(text=event.message.text * 10_000)  # a bug: the handler builds a message too long for the contract
        applied.append(event.message.text)

    bootstrap = ["--bootstrap", broker.bootstrap]
    async with consuming(broker, handler):
        await publish_contacts(broker.bootstrap, *poisons)
        await read_topic(broker.bootstrap, f"{CONTACTS}.dlq", at_least=3)

        code, out, _ = await kefu(capsys, "dlq", "list", *bootstrap)
        assert code == 0
        lines = out.splitlines()
        assert len(lines) == 3
        for poison in poisons:
            (line,) = [line for line in lines if str(poison.event_id) in line]
            assert line.startswith(f"{CONTACTS}.dlq ")
            assert f"from {CONTACTS}[" in line
            assert "validation_error: ValidationError of Message (string_too_long)" in line
        assert "secret" not in out

        code, out, _ = await kefu(capsys, "dlq", "list", "--json", "--topic", CONTACTS, *bootstrap)
        listed = {entry["event_id"]: entry for entry in map(json.loads, out.splitlines())}
        assert listed.keys() == {str(p.event_id) for p in poisons}
        assert {entry["class"] for entry in listed.values()} == {"validation_error"}
        assert {entry["attempts"] for entry in listed.values()} == {"1"}

        fixed = True
        first, second, third = poisons
        code, out, _ = await kefu(capsys, "dlq", "replay", "--event-id", str(first.event_id), *bootstrap)
        assert code == 0
        assert f"to {CONTACTS}" in out
        position = listed[str(second.event_id)]["position"]
        code, _, _ = await kefu(capsys, "dlq", "replay", "--topic", CONTACTS, "--offset", position, *bootstrap)
        assert code == 0

        async def replayed() -> list[str] | None:
            return sorted(applied) if len(applied) >= 2 else None

        assert await eventually(replayed) == ["secret complaint 0", "secret complaint 1"]
    assert third.message.text not in applied  # only what was chosen
    records = await read_topic(broker.bootstrap, CONTACTS, at_least=5)
    again = [r for r in records if "kefu-replayed-from" in dict(r.headers)]
    replayed_events = sorted((ContactEvent.model_validate_json(r.value) for r in again), key=lambda e: str(e.event_id))
    assert replayed_events == sorted([first, second], key=lambda e: str(e.event_id))  # as they were published
    # (read back partition by partition: the two may sit on different partitions, so no order between them)
    assert {r.key for r in again} == {first.conversation_key.encode(), second.conversation_key.encode()}


async def test_replay_says_what_it_cannot_do(broker: EmbeddedKafka, capsys: pytest.CaptureFixture[str]) -> None:
    bootstrap = ["--bootstrap", broker.bootstrap]
    code, _, err = await kefu(capsys, "dlq", "replay", *bootstrap)
    assert (code, err.strip()) == (2, "kefu dlq replay: choose records with --offset, --event-id or --all")
    code, _, err = await kefu(capsys, "dlq", "replay", "--offset", "0:1", *bootstrap)
    assert code == 2
    assert "needs exactly one --topic" in err
    missing = "5a1c1f0e-6f3b-5b7e-9a59-1d2c3b4a5f60"
    code, _, err = await kefu(capsys, "dlq", "replay", "--event-id", missing, *bootstrap)
    assert (code, err.strip()) == (1, f"kefu dlq replay: no dead letter at or with {missing}")
    code, out, err = await kefu(capsys, "dlq", "list", "--bootstrap", "127.0.0.1:1")
    assert code == 1
    assert out == ""
    assert err.startswith("kefu dlq: the broker at 127.0.0.1:1 did not answer")
    assert len(err.splitlines()) == 1
