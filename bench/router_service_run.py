"""One run of ``bench.router_service`` on the tree the interpreter imports ``services`` and ``kefu`` from (the working
tree, or another revision's through ``PYTHONPATH``): a router's ``RoutingService`` on a database of its own, without
Kafka, applying what its consumers and agents would.

    PYTHONPATH=<tree> python bench/router_service_run.py DATABASE_URL CONFIG_PATH --contacts 300 --fetch 25

Four phases, ``--contacts`` contacts each, after a warm-up of one fetch (connections, prepared statements, compiled
SQL): ``consume``, the first message of a new customer's conversation, a fetch at a time (``events.on_contacts``:
the contact opens and is offered); ``accept``, each offer accepted by its agent (``commands.accept``); ``complete``,
each assignment completed (``commands.complete``); ``return``, the same customers' second conversations (each
customer found, with the agent who served them to wait for), consumed as the first, then served unmeasured. Per
contact and phase it prints, as one JSON line: statements SQLAlchemy sent (an ``executemany`` counts once),
statements PostgreSQL executed (an ``executemany`` counts its rows), round trips (writes to the database's socket:
each is a request the client then waits for), this process's CPU and the PostgreSQL server's CPU (all its
processes) in milliseconds.
"""

import argparse
import asyncio
import asyncio.selector_events
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import event, text
from sqlalchemy.engine.interfaces import ExecuteStyle

from contracts import Channel, ContactEvent, Customer, Message
from kefu import db
from services.router import commands, events
from services.router.adapters.feed import AgentFeed
from services.router.config import RouterSettings
from services.router.domain.config import RoutingConfig
from services.router.service import RoutingService
from tools.assemble import router_config


class Counts:
    """Statements, executes and round trips so far; the socket writes of every connection of the process."""

    def __init__(self) -> None:
        self.statements = self.executes = self.writes = 0
        transport: Any = vars(asyncio.selector_events)["_SelectorSocketTransport"]  # asyncpg's, on asyncio's loop
        write = transport.write

        def counted(this: Any, data: Any) -> None:
            self.writes += 1
            write(this, data)

        transport.write = counted

    def on_execute(self, _conn: Any, _cursor: Any, _sql: str, params: Any, context: Any, _many: bool) -> None:
        self.statements += 1
        # an executemany is an execute a row; "insertmanyvalues" (an INSERT's rows as one VALUES list) is one
        self.executes += len(params) if context.execute_style is ExecuteStyle.EXECUTEMANY else 1

    def now(self) -> tuple[int, int, int]:
        return self.statements, self.executes, self.writes


def server_cpu(postmaster: psutil.Process) -> float:
    """CPU seconds of the PostgreSQL server's processes (those alive: the pool keeps its connections)."""
    total = 0.0
    for process in [postmaster, *postmaster.children()]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def contact(n: int, run: str, conversation: str = "") -> ContactEvent:
    """The first message of customer ``n``'s conversation on the web chat (a new customer's, the first time)."""
    now = datetime.now(UTC)
    return ContactEvent(
        event_id=uuid.uuid4(),
        channel=Channel.WEBCHAT,
        account_id="demo",
        conversation_key=f"webchat:demo:{run}-{n}{conversation}",
        dedup_key=f"{run}-{n}",
        customer=Customer(platform_id=f"visitor-{run}-{n}", display_name="张伟"),
        message=Message(text="你好，我的订单还没有到"),
        occurred_at=now,
        received_at=now,
    )


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def cycle(
    service: RoutingService, contacts: int, fetch: int, run: str
) -> dict[str, Callable[[], Awaitable[None]]]:
    """The phases of ``contacts`` new contacts, each to be awaited in turn; then the same customers' second
    conversations (``return``: a customer found, with a last agent to wait for), served unmeasured (``_``)."""
    arriving = [contact(n, run) for n in range(contacts)]
    returning = [contact(n, run, "-again") for n in range(contacts)]

    def consume(records: list[ContactEvent]) -> Callable[[], Awaitable[None]]:
        async def phase() -> None:
            for fetched in chunks(records, fetch):
                await events.on_contacts(service, fetched)

        return phase

    def accept(records: list[ContactEvent]) -> Callable[[], Awaitable[None]]:
        async def phase() -> None:
            ids = {e.event_id for e in records}
            for offer in [o for o in service.state.offers.values() if o.contact.id in ids]:
                await commands.accept(service, offer.id, offer.agent_id)

        return phase

    def complete(records: list[ContactEvent]) -> Callable[[], Awaitable[None]]:
        async def phase() -> None:
            ids = {e.event_id for e in records}
            for assignment in [a for a in service.state.assignments.values() if a.contact.id in ids]:
                await commands.complete(service, assignment.id, assignment.agent_id, disposition="resolved")

        return phase

    return {
        "consume": consume(arriving),
        "accept": accept(arriving),
        "complete": complete(arriving),
        "return": consume(returning),
        "_accept": accept(returning),
        "_complete": complete(returning),
    }


async def run(url: str, config_path: Path, contacts: int, fetch: int) -> dict[str, dict[str, float]]:
    settings = RouterSettings(database_url=url, config_path=config_path)
    config = router_config(settings, log_warnings=False).section("routing", RoutingConfig)
    engine = db.create_engine(url)
    counts = Counts()
    event.listen(engine.sync_engine, "before_cursor_execute", counts.on_execute)
    try:
        async with engine.connect() as conn:
            backend = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        postmaster = psutil.Process(backend).parent()
        assert postmaster is not None
        service = RoutingService(engine=engine, config=config, feed=AgentFeed())
        await service.start(config_path.read_text(encoding="utf-8"), config_path)  # noqa: ASYNC240  # a small file
        for phase in (await cycle(service, fetch, fetch, "warm-up")).values():
            await phase()
        results: dict[str, dict[str, float]] = {}
        for name, phase in (await cycle(service, contacts, fetch, "measured")).items():
            before, cpu, pg = counts.now(), time.process_time(), server_cpu(postmaster)
            await phase()
            if name.startswith("_"):
                continue
            cpu, pg = time.process_time() - cpu, server_cpu(postmaster) - pg
            statements, executes, writes = (b - a for a, b in zip(before, counts.now(), strict=True))
            results[name] = {
                "statements": statements / contacts,
                "executes": executes / contacts,
                "round trips": writes / contacts,
                "CPU ms": cpu / contacts * 1e3,
                "PostgreSQL CPU ms": pg / contacts * 1e3,
            }
        assert not service.state.waiting and not service.state.assignments, "every contact offered and completed"
        return results
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("database_url")
    parser.add_argument("config_path", type=Path)
    parser.add_argument("--contacts", type=int, default=300)
    parser.add_argument("--fetch", type=int, default=25)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.database_url, args.config_path, args.contacts, args.fetch))))


if __name__ == "__main__":
    main()
