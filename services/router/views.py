"""How the router shows its objects to API callers and desktop feeds (JSON-ready dicts)."""

from typing import Any

from services.router.domain.model import Agent, Assignment, ContactRef, Offer, Presence


def contact_view(contact: ContactRef) -> dict[str, Any]:
    return {
        "contact_id": str(contact.id),
        "conversation_key": contact.conversation_key,
        "channel": contact.channel.value,
        "queue_id": contact.queue_id,
        "priority": contact.priority,
        "enqueued_at": contact.enqueued_at.isoformat(),
    }


def offer_view(offer: Offer) -> dict[str, Any]:
    return {
        "offer_id": str(offer.id),
        "agent_id": offer.agent_id,
        "expires_at": offer.expires_at.isoformat(),
        **contact_view(offer.contact),
    }


def assignment_view(assignment: Assignment) -> dict[str, Any]:
    return {
        "assignment_id": str(assignment.id),
        "agent_id": assignment.agent_id,
        **contact_view(assignment.contact),
    }


def agent_view(agent: Agent) -> dict[str, Any]:
    return {
        "agent_id": agent.id,
        "name": agent.name,
        "groups": list(agent.groups),
        "skills": agent.skills,
        "capacity": {str(ch): n for ch, n in agent.capacity.items()},
        "presence": agent.presence.value,
        "idle_since": agent.idle_since.isoformat(),
        "load": {str(ch): n for ch, n in agent.load.items() if n},
        "wrap_up_until": agent.busy_until.isoformat()
        if agent.presence is Presence.WRAP_UP and agent.busy_until
        else None,
        "missed_offers": agent.missed,
    }
