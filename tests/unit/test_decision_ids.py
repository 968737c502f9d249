"""The ids of offers and assignments are ``uuid.uuid5``'s, though ``decisions`` computes them its own faster way:
they are persisted, so a changed id would be a different offer."""

import uuid

from hypothesis import given
from hypothesis import strategies as st

from services.router.domain.decisions import assignment_id_for, offer_id_for


@given(st.uuids(), st.integers(min_value=0, max_value=10**6))
def test_offer_ids_are_uuid5_of_the_contact_and_attempt(contact_id: uuid.UUID, attempt: int) -> None:
    assert offer_id_for(contact_id, attempt) == uuid.uuid5(contact_id, f"offer:{attempt}")


@given(st.uuids())
def test_assignment_ids_are_uuid5_of_the_offer(offer_id: uuid.UUID) -> None:
    assert assignment_id_for(offer_id) == uuid.uuid5(offer_id, "assignment")
