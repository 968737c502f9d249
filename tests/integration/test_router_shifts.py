"""Shifts set presence, against a real PostgreSQL and Tansu: at start-up, when a shift begins or ends, and not
in between (an agent who went away during a shift stays away)."""

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from contracts import Channel
from kefu.calendar import WEEKDAYS
from services.router import commands, queries
from services.router.bootstrap import Router
from services.router.config import RouterSettings
from services.router.domain.config import AgentConfig, Shift
from services.router.domain.model import Presence
from services.router.shifts import ShiftKeeper
from tests.integration.conftest import ADMIN_TOKEN, CONFIG
from tests.integration.support import eventually, router_settings, serving
from tools.assemble import router_app as create_app
from tools.assemble import router_running as running
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration

ALL_WEEK = ", ".join(f'{day}: ["00:00-24:00"]' for day in WEEKDAYS)
OTHER_DAY = WEEKDAYS[(datetime.now(UTC).weekday() + 3) % 7]  # a day that is neither today nor tomorrow
SHIFT_AGENTS = f"""\
    - {{id: dora, name: Dora, skills: {{presales: 1}}, capacity: {{webchat: 1}}, initial_presence: offline,
        shift: {{time_zone: UTC, weekly: {{{ALL_WEEK}}}}}}}
    - {{id: eve, name: Eve, skills: {{presales: 1}}, capacity: {{webchat: 1}}, initial_presence: available,
        shift: {{time_zone: UTC, weekly: {{{OTHER_DAY}: ["09:00-17:00"]}}}}}}
auth:
"""
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def shift_config(tmp_path: Path) -> Path:
    path = tmp_path / "kefu.yaml"
    path.write_text(CONFIG.replace("auth:\n", SHIFT_AGENTS, 1), encoding="utf-8")
    return path


def _settings(database_url: str, broker: EmbeddedKafka, config_path: Path, every: float) -> RouterSettings:
    return router_settings(database_url, broker, config_path).model_copy(update={"shift_check_seconds": every})


def _presence(router: Router, agent_id: str) -> Presence:
    return router.service.state.agents[agent_id].presence


async def test_at_start_up_shifts_set_presence_and_away_within_a_shift_stays_away(
    database_url: str, broker: EmbeddedKafka, shift_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs = [0]  # the keeper's passes, counted
    sync = ShiftKeeper.sync

    async def counted(keeper: ShiftKeeper) -> None:
        await sync(keeper)
        syncs[0] += 1

    monkeypatch.setattr(ShiftKeeper, "sync", counted)
    async with running(_settings(database_url, broker, shift_config, every=0.05)) as router:

        async def settled() -> bool:
            return _presence(router, "dora") is Presence.AVAILABLE and _presence(router, "eve") is Presence.OFFLINE

        await eventually(settled)
        assert _presence(router, "alice") is Presence.AVAILABLE  # no shift: left alone
        assert _presence(router, "bob") is Presence.AWAY

        await commands.set_presence(router.service, "dora", Presence.AWAY)
        await commands.set_presence(router.service, "eve", Presence.AVAILABLE)  # overtime, by hand
        seen = syncs[0]

        async def passed() -> bool:  # whole passes after the change, however long a loaded machine takes for them
            return syncs[0] >= seen + 3

        await eventually(passed)
        assert _presence(router, "dora") is Presence.AWAY
        assert _presence(router, "eve") is Presence.AVAILABLE


async def test_presence_follows_the_start_and_end_of_a_shift(
    database_url: str, broker: EmbeddedKafka, shift_config: Path
) -> None:
    now = [datetime(2026, 11, 23, 8, tzinfo=SHANGHAI)]
    async with running(_settings(database_url, broker, shift_config, every=3600)) as router:
        keeper = ShiftKeeper(router.service, clock=lambda: now[0])
        shift = Shift(time_zone="Asia/Shanghai", weekly={"mon": ["09:00-17:00"]})
        fay = AgentConfig(id="fay", name="Fay", skills={"presales": 2}, capacity={Channel.WEBCHAT: 1}, shift=shift)
        await commands.upsert_agent(router.service, fay)
        assert _presence(router, "fay") is Presence.OFFLINE

        seen = []
        for local_hour in (8, 10, 12, 16, 18, 20):
            now[0] = datetime(2026, 11, 23, local_hour, tzinfo=SHANGHAI)
            await keeper.sync()
            seen.append(_presence(router, "fay"))
            if local_hour == 12:
                await commands.set_presence(router.service, "fay", Presence.AWAY)  # lunch, inside the shift
        off, on, away = Presence.OFFLINE, Presence.AVAILABLE, Presence.AWAY
        assert seen == [off, on, on, away, off, off]

        now[0] = datetime(2026, 11, 30, 9, 30, tzinfo=SHANGHAI)  # next Monday
        await keeper.sync()
        assert _presence(router, "fay") is Presence.AVAILABLE


async def test_a_shift_set_over_the_api_survives_a_restart(
    database_url: str, broker: EmbeddedKafka, shift_config: Path
) -> None:
    settings = _settings(database_url, broker, shift_config, every=0.05)
    always = Shift(time_zone="UTC", weekly={day: ["00:00-24:00"] for day in WEEKDAYS})
    body = {"name": "Gus", "skills": {"presales": 1}, "capacity": {"webchat": 1}, "shift": always.model_dump()}
    async with serving(create_app(settings)) as client:
        put = await client.put("/v1/agents/gus", json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert put.status_code == 200, put.text
        bad = {**body, "shift": {"time_zone": "Mars/Olympus", "weekly": {"mon": ["09:00-18:00"]}}}
        refused = await client.put("/v1/agents/gus", json=bad, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert refused.status_code == 422
        assert "unknown IANA time zone" in refused.text
    async with running(settings) as router:
        stored = await queries.stored_shifts(router.service)
        assert Shift.model_validate(stored["gus"]) == always
        assert Shift.model_validate(stored["dora"]).weekly == always.weekly  # the file's shifts are stored too
        assert "alice" not in stored

        async def on_shift() -> bool:
            return _presence(router, "gus") is Presence.AVAILABLE

        await eventually(on_shift)
