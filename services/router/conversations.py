"""Which contact is open in each conversation, as memory has it: a customer's message joins it, or opens a new one.

Memory equals the committed tables whenever the service's lock is free (``service``), and a contact is open (status
queued, offered or assigned) exactly while it waits or is assigned: so the answer is the tables' (the partial unique
index ``uq_contacts_open_conversation``), without asking them for each message (issue 12).
"""

from collections.abc import Iterable
from uuid import UUID

from services.router.domain.decisions import Abandoned, Closed, Completed, Decision, Enqueued
from services.router.domain.model import RoutingState


class OpenConversations:
    """Conversation key -> its open contact, kept by the decisions applied to memory."""

    def __init__(self, state: RoutingState) -> None:
        self._open = {w.ref.conversation_key: w.ref.id for w in state.waiting.values()}
        self._open.update((a.contact.conversation_key, a.contact.id) for a in state.assignments.values())

    def get(self, conversation_key: str) -> UUID | None:
        return self._open.get(conversation_key)

    def apply(self, decisions: Iterable[Decision]) -> None:
        """Follow ``decisions`` as ``decide.apply`` makes them true: a contact opens when it first waits, and
        closes when it is abandoned, completed (not transferred: it waits again) or closed."""
        for decision in decisions:
            if isinstance(decision, Enqueued):
                self._open[decision.contact.conversation_key] = decision.contact.id
            elif isinstance(decision, Abandoned | Closed) or (
                isinstance(decision, Completed) and not decision.transferred
            ):
                contact = decision.contact
                if self._open.get(contact.conversation_key) == contact.id:
                    del self._open[contact.conversation_key]
