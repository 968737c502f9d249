"""What the router does with contacts (events) and what others may ask of it (commands)."""

from enum import StrEnum
from typing import Literal, Self
from uuid import UUID

from pydantic import Field, model_validator

from contracts.types import Channel, Contract, Timestamp


class RoutingEventType(StrEnum):
    """The steps of a contact's life in the router."""

    QUEUED = "queued"
    OFFERED = "offered"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    OFFER_TIMED_OUT = "offer_timed_out"
    ASSIGNED = "assigned"
    COMPLETED = "completed"
    ABANDONED = "abandoned"
    TRANSFERRED = "transferred"
    REQUEUED = "requeued"
    CLOSED = "closed"
    COMMAND_REFUSED = "command_refused"


class RoutingEvent(Contract):
    """One step of a contact's routing, published to ``kefu.routing.events.v1``."""

    schema_version: Literal[1] = Field(default=1, description="Version of this schema.")
    event_id: UUID = Field(description="Unique id of this event.")
    type: RoutingEventType = Field(description="Which step happened.", examples=["offered"])
    occurred_at: Timestamp = Field(description="When the router decided it.")
    contact_id: UUID = Field(description="The contact concerned.")
    conversation_key: str = Field(
        max_length=512, description="The contact's conversation key.", examples=["webchat:demo:conv-1"]
    )
    channel: Channel = Field(description="The contact's channel.", examples=["webchat"])
    queue_id: str = Field(max_length=128, description="The queue the contact is in.", examples=["presales"])
    agent_id: str | None = Field(
        default=None, max_length=128, description="The agent concerned, if any.", examples=["alice"]
    )
    offer_id: UUID | None = Field(default=None, description="The offer concerned, if any.")
    assignment_id: UUID | None = Field(default=None, description="The assignment concerned, if any.")
    priority: int = Field(default=0, description="The contact's priority when it happened.", examples=[5])
    reason: str | None = Field(
        default=None, max_length=1024, description="Why, where the step has a reason.", examples=["declined"]
    )
    customer_id: UUID | None = Field(default=None, description="The router's customer record, when known.")
    customer_tier: str | None = Field(
        default=None, max_length=64, description="The customer's tier (standard, vip, key_account).", examples=["vip"]
    )
    owning_tam: str | None = Field(
        default=None, max_length=128, description="The agent id of a key account's TAM.", examples=["chen"]
    )
    category: str | None = Field(
        default=None,
        max_length=128,
        description="The classification rule that placed the contact (its name), if one did.",
        examples=["technical"],
    )
    command_id: UUID | None = Field(
        default=None, description="The routing command concerned (``command_refused``: the one refused)."
    )


class RoutingCommandType(StrEnum):
    """What may be asked of the router."""

    ESCALATE = "escalate"
    REQUEUE = "requeue"


class ContactState(StrEnum):
    """Where a contact is in the router, as a command's sender saw it."""

    WAITING = "waiting"
    ASSIGNED = "assigned"


class CommandPrecondition(Contract):
    """What a command's sender assumed about the contact; the router applies the command only while it holds."""

    state: ContactState = Field(
        description="Waiting in a queue (offered or not) or assigned to an agent.", examples=["waiting"]
    )
    queue_id: str | None = Field(
        default=None, max_length=128, description="The queue it was in; any queue when absent.", examples=["presales"]
    )
    assignment_id: UUID | None = Field(
        default=None, description="With state ``assigned``: the assignment it was on; any assignment when absent."
    )

    @model_validator(mode="after")
    def _assignment_only_when_assigned(self) -> Self:
        if self.assignment_id is not None and self.state is not ContactState.ASSIGNED:
            raise ValueError("assignment_id is only meaningful with state 'assigned'")
        return self


class RoutingCommand(Contract):
    """A request to move a contact, published to ``kefu.routing.commands.v1``."""

    schema_version: Literal[1] = Field(default=1, description="Version of this schema.")
    command_id: UUID = Field(description="Unique id; the router applies each id once.")
    type: RoutingCommandType = Field(description="What to do.", examples=["escalate"])
    issued_at: Timestamp = Field(description="When it was issued.")
    contact_id: UUID = Field(description="The contact to move.")
    target_group: str = Field(
        max_length=128,
        description="Agent group that must take it (engineers, tam, crisis…).",
        examples=["crisis"],
    )
    target_queue_id: str | None = Field(
        default=None, max_length=128, description="Queue to move it to; the group's default when absent."
    )
    priority: int | None = Field(default=None, description="New priority, if raised.", examples=[100])
    target_agent_id: str | None = Field(
        default=None,
        max_length=128,
        description="One agent who should take it first (a key account's own TAM), if any.",
        examples=["chen"],
    )
    reason: str = Field(max_length=1024, description="Why, for the audit trail.", examples=["crisis lexicon: 曝光"])
    precondition: CommandPrecondition | None = Field(
        default=None,
        description=(
            "What the sender assumed about the contact when it decided (a service acting on its own view); the router "
            "refuses the command, with a ``command_refused`` routing event, when that no longer holds. Absent: "
            "applied to the contact wherever it is (a supervisor's command, an older producer)."
        ),
    )
