"""Shifts set presence: an agent becomes available when their shift starts and offline when it ends.

Only a change of the computed on/off-shift state acts, so an agent who sets themselves away during a shift stays
away until it ends. The first look at an agent compares the shift with their presence instead (offline counts as
off-shift, anything else as on-shift): after a restart, an available agent whose shift is over goes offline and an
offline agent whose shift is running becomes available.

Shifts are read from the agents table each pass (the configuration file's and the API's alike, one home), with each
agent's presence (``queries.shifted_agents``), and their business calendars kept until the stored shift changes;
presence is set through ``commands.set_presence`` like any other change.
"""

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kefu.calendar import BusinessCalendar
from kefu.outage import log_retry
from services.router import commands, queries
from services.router.domain.config import Shift
from services.router.domain.model import Presence
from services.router.service import RoutingService, utcnow

log = logging.getLogger(__name__)


class ShiftKeeper:
    """Sets each agent's presence from their shift; ``sync`` is one pass."""

    def __init__(self, service: RoutingService, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._service = service
        self._clock = clock
        self._on_shift: dict[str, bool] = {}
        self._calendars: dict[str, tuple[dict[str, Any], BusinessCalendar]] = {}

    async def sync(self) -> None:
        """Compare every agent's shift with the time now and set the presence of those whose shift began or ended."""
        now = self._clock()
        shifted = await queries.shifted_agents(self._service)
        self._on_shift = {a: on for a, on in self._on_shift.items() if a in shifted}
        self._calendars = {a: cached for a, cached in self._calendars.items() if a in shifted}
        for agent_id, (raw, presence) in shifted.items():
            on = self._calendar(agent_id, raw).is_open(now)
            if on != self._on_shift.get(agent_id, presence is not Presence.OFFLINE):
                log.info("agent %s is %s shift: setting presence", agent_id, "on" if on else "off")
                await commands.set_presence(self._service, agent_id, Presence.AVAILABLE if on else Presence.OFFLINE)
            self._on_shift[agent_id] = on  # only once acted on: a failed change is tried again next pass

    def _calendar(self, agent_id: str, raw: dict[str, Any]) -> BusinessCalendar:
        cached = self._calendars.get(agent_id)
        if cached is None or cached[0] != raw:
            cached = self._calendars[agent_id] = (raw, Shift.model_validate(raw).calendar())
        return cached[1]


async def run(keeper: ShiftKeeper, every: float) -> None:
    """Sync now, then every ``every`` seconds; a failed pass is logged and retried on the next."""
    while True:
        try:
            await keeper.sync()
        except Exception as exc:
            log_retry(log, exc, "applying shifts failed; will retry")
        await asyncio.sleep(every)
