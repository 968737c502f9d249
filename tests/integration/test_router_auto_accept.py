"""A queue that assigns without an offer to accept (``auto_accept``), against a real PostgreSQL and Tansu."""

import logging
import uuid
from pathlib import Path

import pytest

from services.router import commands
from services.router.bootstrap import Router
from tests.integration.conftest import CONFIG
from tests.integration.support import contact_event, eventually, publish_contacts, router_settings
from tools.assemble import router_running as running
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration


@pytest.fixture
def auto_accept_config(tmp_path: Path) -> Path:
    """CONFIG with presales assigning at once, and Alice taking three webchats."""
    path = tmp_path / "kefu.yaml"
    text = CONFIG.replace("offer_timeout_seconds: 1}", "offer_timeout_seconds: 1, auto_accept: true}", 1)
    text = text.replace("capacity: {webchat: 2}", "capacity: {webchat: 3}", 1)
    assert "auto_accept: true" in text and "webchat: 3" in text
    path.write_text(text, encoding="utf-8")
    return path


def _assigned(router: Router) -> set[uuid.UUID]:
    return {a.contact.id for a in router.service.state.assignments.values()}


async def test_an_auto_accept_queue_assigns_promptly_and_the_consumer_never_fails(
    database_url: str, broker: EmbeddedKafka, auto_accept_config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events = [contact_event(f"auto{i}") for i in range(5)]
    with caplog.at_level(logging.INFO):
        async with running(router_settings(database_url, broker, auto_accept_config)) as router:
            await publish_contacts(broker.bootstrap, *events)

            async def all_placed() -> bool:
                return len(_assigned(router)) == 3 and len(router.service.state.waiting) == 2

            # promptly: without a retry of the consumer's, which the log below would show (a number of seconds
            # here was the machine's load as much as the router's)
            await eventually(all_placed, timeout=30)
            assert not router.service.state.offers, "an auto-accepted offer stays open"
            waiting = set(router.service.state.waiting)
            assert len(waiting) == 2

            # a finished assignment frees Alice: the next contact is hers at once, again without an offer
            first = next(iter(router.service.state.assignments.values()))
            await commands.complete(router.service, first.id, None)
            assert len(_assigned(router)) == 3
            assert len(router.service.state.waiting) == 1
    failures = [
        r
        for r in caplog.records
        if "failed" in r.getMessage() or "apply again" in r.getMessage() or r.levelno >= logging.ERROR
    ]
    assert not failures, [r.getMessage() for r in failures]
