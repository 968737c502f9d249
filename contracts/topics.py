"""Kafka topic names. Each topic has a ``.dlq`` sibling for messages its consumers cannot apply."""

CONTACTS = "kefu.contacts.v1"
"""Normalized inbound contacts from the channel adapters, keyed by conversation key."""

ROUTING_EVENTS = "kefu.routing.events.v1"
"""What the router did with each contact, keyed by contact id."""

ROUTING_COMMANDS = "kefu.routing.commands.v1"
"""Requests to the router (escalate, requeue), keyed by contact id."""

ESCALATIONS = "kefu.escalations.v1"
"""Escalation case lifecycle events, keyed by contact id."""

DLQ_SUFFIX = ".dlq"


def dlq(topic: str) -> str:
    """Return the dead-letter topic of ``topic``."""
    return topic + DLQ_SUFFIX


PRIMARY_TOPICS = (CONTACTS, ROUTING_EVENTS, ROUTING_COMMANDS, ESCALATIONS)
ALL_TOPICS = PRIMARY_TOPICS + tuple(dlq(t) for t in PRIMARY_TOPICS)
