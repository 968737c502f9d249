"""What every channel's normalization shares: account ids, stable event ids, conversation keys, customer ids."""

import uuid
from datetime import UTC, datetime

from contracts import Channel, identities
from services.channels.exceptions import InvalidPayload

ACCOUNT_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
"""Account ids appear in webhook URLs: letters, digits, ``_.-``."""

EVENT_NAMESPACE = uuid.UUID("6f1c43a4-1d9e-4c57-9a5e-2b7f0c7b9e11")


def event_id(channel: Channel, account_id: str, dedup_key: str) -> uuid.UUID:
    """A stable event id: the same platform delivery always gets the same id, so retries are absorbed."""
    return uuid.uuid5(EVENT_NAMESPACE, f"{channel}:{account_id}:{dedup_key}")


def unix_time(seconds: float) -> datetime | None:
    """A platform's Unix time as an aware datetime; None when no ``datetime`` can hold it (a sender's clock or a
    fuzzer can say year 33658), so that an adapter refuses it or uses the time of receipt, never fails."""
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def conversation_key(channel: Channel, account_id: str, conversation: str) -> str:
    """The Kafka key and conversation identity: ``channel:account:conversation``."""
    return f"{channel}:{account_id}:{conversation}"


def customer_id(channel: Channel, value: str, where: str) -> str:
    """The sender's platform id, ``value`` from ``where``, in its canonical form (``contracts.identities``), so
    that it names the same customer as an identity linked by hand; ``InvalidPayload`` (422) says why it is none."""
    try:
        return identities.canonical(channel, value)
    except identities.InvalidIdentity as exc:
        raise InvalidPayload(f"{where} is not valid: {exc}") from None
