"""Queue statistics for wallboards: what waits now (from the routing state) and how the queue did
over a recent window (from PostgreSQL).

Definitions (the contact-centre usual ones):

* ASA: mean time from entering the queue to being assigned, over contacts assigned in the window;
* service level: contacts answered within the threshold, over contacts answered or abandoned in the
  window (abandoned ones count against it);
* abandonment rate: abandoned over answered plus abandoned;
* AHT: mean time from assignment to completion, over assignments completed in the window;
* estimated wait of a new contact, per channel: unknown (None) when no agent can ever serve that channel of the
  queue; zero with a free slot on the channel now; else the contacts of the channel ahead of it (plus itself) times
  AHT, shared among the available agents with capacity on the channel. The queue's own estimate is its slowest
  channel's, and unknown when any channel of it has nobody;
* unservable: waiting contacts no agent, in any presence, can ever serve (skills, group, a slot on the channel).
"""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import Channel
from services.router.adapters.orm import assignments, contacts
from services.router.domain.model import Agent, Presence, Queue, RoutingState, WaitingContact


def live(state: RoutingState, queue: Queue, now: datetime) -> dict[str, Any]:
    """What waits in ``queue`` and who could serve it, right now, in all and per channel."""
    waiting = [w for w in state.waiting.values() if w.ref.queue_id == queue.id]
    serves = state.index().eligible  # skills at any bullseye step, and the queue's group
    eligible = [a for a in state.agents.values() if queue.id in serves.get(a.id, {})]
    presence = {p.value: 0 for p in Presence}
    for agent in eligible:
        presence[agent.presence.value] += 1
    channels = {
        channel.value: _channel(channel, [w for w in waiting if w.ref.channel is channel], eligible)
        for channel in sorted(queue.channels)
    }
    oldest = min((w.ref.enqueued_at for w in waiting), default=None)
    return {
        "queue_id": queue.id,
        "name": queue.name,
        "waiting": len(waiting),
        "offered": sum(1 for w in waiting if w.offer_id is not None),
        "unservable": sum(c["unservable"] for c in channels.values()),
        "oldest_wait_seconds": round((now - oldest).total_seconds(), 3) if oldest else 0.0,
        "eligible_agents": presence,
        "free_slots": sum(c["free_slots"] for c in channels.values()),
        "channels": channels,
    }


def _channel(channel: Channel, waiting: list[WaitingContact], eligible: list[Agent]) -> dict[str, int]:
    capable = [a for a in eligible if a.capacity.get(channel, 0) > 0]
    available = [a for a in capable if a.presence is Presence.AVAILABLE]
    return {
        "waiting": len(waiting),
        "offered": sum(1 for w in waiting if w.offer_id is not None),
        "unservable": 0 if capable else len(waiting),
        "agents_with_capacity": len(capable),
        "available_agents": len(available),
        "free_slots": sum(max(0, a.capacity.get(channel, 0) - a.load[channel]) for a in available),
    }


async def window(
    conn: AsyncConnection, queue_id: str, *, now: datetime, minutes: int, answer_within_seconds: int
) -> dict[str, Any]:
    """How ``queue_id`` did over the last ``minutes``."""
    since = now - timedelta(minutes=minutes)
    wait = func.extract("epoch", assignments.c.assigned_at - contacts.c.enqueued_at)
    answered = (
        await conn.execute(
            select(
                func.count(),
                func.avg(wait),
                func.count().filter(wait <= answer_within_seconds),
            )
            .select_from(assignments.join(contacts, contacts.c.id == assignments.c.contact_id))
            .where(contacts.c.queue_id == queue_id, assignments.c.assigned_at >= since)
        )
    ).one()
    abandoned = (
        await conn.execute(
            select(func.count()).where(
                contacts.c.queue_id == queue_id, contacts.c.status == "abandoned", contacts.c.closed_at >= since
            )
        )
    ).scalar_one()
    handle = (
        await conn.execute(
            select(func.avg(func.extract("epoch", assignments.c.completed_at - assignments.c.assigned_at)))
            .select_from(assignments.join(contacts, contacts.c.id == assignments.c.contact_id))
            .where(contacts.c.queue_id == queue_id, assignments.c.completed_at >= since)
        )
    ).scalar_one()
    count, asa, within = answered
    offered = count + abandoned
    return {
        "window_minutes": minutes,
        "answered": count,
        "abandoned": abandoned,
        "asa_seconds": round(float(asa), 3) if asa is not None else None,
        "service_level": {
            "answer_within_seconds": answer_within_seconds,
            "percent": round(100.0 * within / offered, 2) if offered else None,
        },
        "abandonment_percent": round(100.0 * abandoned / offered, 2) if offered else None,
        "aht_seconds": round(float(handle), 3) if handle is not None else None,
    }


def estimated_wait(live_stats: dict[str, Any], aht_seconds: float | None) -> float | None:
    """Seconds a new contact would wait, by the rule in the module docstring: of one channel's figures from ``live``,
    or of the whole queue's (its slowest channel); None when unknown (nobody can serve it, or no history yet)."""
    if "channels" in live_stats:
        waits = [estimated_wait(figures, aht_seconds) for figures in live_stats["channels"].values()]
        return None if any(w is None for w in waits) else max((w for w in waits if w is not None), default=None)
    if not live_stats["agents_with_capacity"]:
        return None
    if live_stats["free_slots"] > 0:
        return 0.0
    if aht_seconds is None:
        return None
    ahead = live_stats["waiting"] - live_stats["offered"] + 1
    return round(float(ahead) * aht_seconds / max(1, int(live_stats["available_agents"])), 1)
