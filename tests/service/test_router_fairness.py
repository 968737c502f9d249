"""A desktop's request does not wait behind a whole fetch of new contacts.

Above capacity a fetch holds hundreds of records (``kefu.consume.MAX_RECORDS``). Applied under the routing lock all at
once, it made every accept wait seconds: in the end-to-end bench at 80 contacts/s, 852 of 3,814 offers timed out
while their agents' accepts waited, and each was offered again (issue 12: overload must be graceful, not a
collapse). A fetch is applied in transactions of at most ``events.BATCH_RECORDS`` records, the lock let go between
them, so a waiting request goes next.
"""

import asyncio

import pytest

from services.router import commands, events
from services.router.domain.entities import Presence
from tests.integration.support import contact_event
from tests.service.conftest import Router

pytestmark = pytest.mark.service

BATCH = events.BATCH_RECORDS


def contacts_in_memory(router: Router) -> int:
    state = router.service.state
    return len(state.waiting) + len(state.assignments)  # an offered contact waits, reserved by its offer


async def test_a_desktop_request_waits_for_at_most_one_batch_of_a_large_fetch(router: Router) -> None:
    fetch = [contact_event(f"fair-{i}") for i in range(3 * BATCH)]
    applying = asyncio.create_task(events.on_contacts(router.service, fetch))
    while contacts_in_memory(router) == 0:  # the fetch is being applied: its first change reached memory
        await asyncio.sleep(0)
    await commands.set_presence(router.service, "bob", Presence.AVAILABLE)
    seen = contacts_in_memory(router)  # no await since the request let go of the lock: the fetch has not resumed
    await applying
    assert seen <= BATCH
    assert contacts_in_memory(router) == len(fetch)
    assert router.service.state.agents["bob"].presence is Presence.AVAILABLE


async def test_a_fetch_in_several_batches_is_applied_once_and_a_redelivery_changes_nothing(router: Router) -> None:
    fetch = [contact_event(f"again-{i}") for i in range(2 * BATCH + 3)]
    await events.on_contacts(router.service, fetch)
    assert contacts_in_memory(router) == len(fetch)
    assert len(router.commits) == 3  # a transaction a batch, each with routing events for the relay
    await events.on_contacts(router.service, fetch)  # the consumer's redelivery after a crash
    assert contacts_in_memory(router) == len(fetch)
    assert len(router.commits) == 3  # nothing written
