"""Queue statistics for wallboards: what waits now (from the routing state) and how the queue did
over a recent window (from PostgreSQL).

Definitions (the contact-centre usual ones):

* ASA: mean time from entering the queue to being assigned, over contacts assigned in the window;
* service level: contacts answered within the threshold, over contacts answered or abandoned in the
  window (abandoned ones count against it);
* abandonment rate: abandoned over answered plus abandoned;
* AHT: mean time from assignment to completion, over assignments completed in the window;
* estimated wait of a new contact: zero with an eligible free slot now, else the contacts ahead of it
  (plus itself) times AHT, shared among the eligible available agents.
"""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.router.adapters.orm import assignments, contacts
from services.router.domain.model import Presence, Queue, RoutingState


def live(state: RoutingState, queue: Queue, now: datetime) -> dict[str, Any]:
    """What waits in ``queue`` and who could serve it, right now."""
    waiting = [w for w in state.waiting.values() if w.ref.queue_id == queue.id]
    serves = state.index().eligible  # skills at any bullseye step, and the queue's group
    eligible = [a for a in state.agents.values() if queue.id in serves.get(a.id, {})]
    presence = {p.value: 0 for p in Presence}
    for agent in eligible:
        presence[agent.presence.value] += 1
    free_slots = sum(
        max(0, agent.capacity.get(channel, 0) - agent.load[channel])
        for agent in eligible
        if agent.presence is Presence.AVAILABLE
        for channel in queue.channels
    )
    oldest = min((w.ref.enqueued_at for w in waiting), default=None)
    return {
        "queue_id": queue.id,
        "name": queue.name,
        "waiting": len(waiting),
        "offered": sum(1 for w in waiting if w.offer_id is not None),
        "oldest_wait_seconds": round((now - oldest).total_seconds(), 3) if oldest else 0.0,
        "eligible_agents": presence,
        "free_slots": free_slots,
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
    """Seconds a new contact would wait, by the rule in the module docstring; None without history."""
    if live_stats["free_slots"] > 0:
        return 0.0
    if aht_seconds is None:
        return None
    available = live_stats["eligible_agents"][Presence.AVAILABLE.value]
    ahead = live_stats["waiting"] - live_stats["offered"] + 1
    return round(float(ahead) * aht_seconds / max(1, int(available)), 1)
