"""The events and commands that cross Kafka between kefu's services.

This package is the only code the services share. Every model is immutable, versioned by
``schema_version`` and documented field by field; ``contracts/schemas/`` holds the JSON Schema
generated from them (``kefu contracts``), and a test fails when the two drift apart.
"""

from contracts.contacts import Attachment, ContactEvent, ContactEventKind, Customer, Message
from contracts.escalations import EscalationEvent
from contracts.routing import RoutingCommand, RoutingEvent, RoutingEventType
from contracts.topics import ALL_TOPICS, CONTACTS, ESCALATIONS, ROUTING_COMMANDS, ROUTING_EVENTS, dlq
from contracts.types import Channel

__all__ = [
    "ALL_TOPICS",
    "CONTACTS",
    "ESCALATIONS",
    "ROUTING_COMMANDS",
    "ROUTING_EVENTS",
    "Attachment",
    "Channel",
    "ContactEvent",
    "ContactEventKind",
    "Customer",
    "EscalationEvent",
    "Message",
    "RoutingCommand",
    "RoutingEvent",
    "RoutingEventType",
    "dlq",
]
