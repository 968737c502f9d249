"""How the router orders its candidates: the entries of the index's agent and contact heaps, smallest first.

Named tuples, so that code reads each part by name while heaps and comparisons still treat them as plain tuples,
item by item, in C (but for the agents' entries: see ``AgentEntry``). Every order ends in the candidate's place in
the state's dicts, so ties fall exactly as a scan of those dicts would break them.
"""

from datetime import datetime
from typing import Any, NamedTuple

from services.router.domain.entities import EPOCH, ContactRef, Queue, WaitingContact

# An available agent with a free slot, in the heap of a (queue, channel, bullseye step):
# (first, second, order, version, agent_id): the agent's rank by the queue's policy in two parts (see ``Agent.rank``),
# its place in the state, the version of its entries (older ones are dead: it was entered again since), its id.
# A plain tuple, read by unpacking into these names: the collector stops tracking a plain tuple of atoms, never a
# named tuple, and the agent heaps hold tens of thousands of entries (measured on ``python -m bench.router``: 45,000
# more objects tracked, a fifth more time in full collections).
AgentEntry = tuple[Any, Any, int, int, str]


class ContactEntry(NamedTuple):
    """A free waiting contact, in the heap of its (queue, channel): highest priority, then oldest, first."""

    rank: float  # see ``contact_rank``
    enqueued_at: datetime
    order: int  # the contact's arrival order
    key: int  # the contact's id as an int (``UUID.int``): the index's dicts hash it in C, not in ``UUID.__hash__``
    # the contact, as the state holds it while the entry is live (never compared: ``order`` is the contact's alone)
    waiting: WaitingContact


def contact_rank(queue: Queue | None, ref: ContactRef) -> float:
    """The first item of a contact's entry: −priority, or in an aging queue aging × minutes(enqueued) − priority.

    Effective priority at time t is priority + aging × (t − enqueued), so within one queue this orders contacts
    as their effective priority does at every t.
    """
    if queue is None or not queue.aging_per_minute:
        return -ref.priority
    return queue.aging_per_minute * (ref.enqueued_at - EPOCH).total_seconds() / 60 - ref.priority


def rounded(rank: float) -> float:
    """A rank in an aging queue at some time, rounded so that equal priorities in different queues compare equal."""
    return round(rank, 6)
