"""Real servers for integration tests: an embedded PostgreSQL for the session (a fresh, migrated
database per test, copied from a template migrated once) and a fresh Tansu broker per test (it starts in
milliseconds). Under pytest-xdist each worker is a session of its own: its own PostgreSQL, in a directory of its
own, its own brokers, on ports from its own block (``support.free_port``)."""

import contextlib
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from contracts import ALL_TOPICS
from kefu import kafka
from tests.integration.support import free_port
from tools import migrate
from tools.embedded import EmbeddedKafka, EmbeddedPostgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres]:
    # not under pytest's tmp_path: pytest prunes old base temp dirs, which a concurrent session could
    # do to this one's data directory while the server still runs
    root = Path(tempfile.mkdtemp(prefix="kefu-test-pg-"))
    try:
        with EmbeddedPostgres(root / "data") as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
async def migrated_template(postgres: EmbeddedPostgres) -> str:
    """A database migrated once, which every test's database is a copy of; and a server that does not wait for
    the disk, which a test's data need not survive: a database from the template takes 20 ms instead of 300 ms
    (CREATE DATABASE) + 300 ms (the migrations), and each commit is no longer an fsync."""
    admin = create_async_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                await conn.execute(text(f"ALTER SYSTEM SET {setting} = off"))
            await conn.execute(text("SELECT pg_reload_conf()"))
            await conn.execute(text(f'CREATE DATABASE "{TEMPLATE}"'))
    finally:
        await admin.dispose()
    await migrate.upgrade_async(postgres.url(TEMPLATE))
    return TEMPLATE


TEMPLATE = "kefu_template"


@pytest.fixture
async def database_url(postgres: EmbeddedPostgres, migrated_template: str) -> AsyncIterator[str]:
    name = f"kefu_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_template}"'))
    url = postgres.url(name)
    yield url
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    await admin.dispose()


@pytest.fixture(scope="session", autouse=True)
def quick_group_joins() -> Iterator[None]:
    """Consumers of the services the tests start (in process or as processes) join their groups in about a second:
    Tansu holds a join for half the session timeout (``kefu.kafka``), 5 s at the default 10 s."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(kafka.SESSION_TIMEOUT_ENV, str(TEST_SESSION_TIMEOUT_MS))
        yield


TEST_SESSION_TIMEOUT_MS = 2000


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedKafka]:
    server = start_broker()
    try:
        await kafka.ensure_topics(server.bootstrap, ALL_TOPICS)
        yield server
    finally:
        server.stop()


class Broker(EmbeddedKafka):
    """An embedded broker that stops at once, also while clients are connected: Tansu 0.6 aborts their connections
    on SIGINT, whereas on SIGTERM (``EmbeddedKafka.stop``) it waits for them to hang up, 5 s at most (measured:
    5.009 s with a producer connected, 0.005 s on SIGINT). Its storage is memory: nothing is lost by not waiting."""

    def stop(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        super().stop()


def start_broker(port: int | None = None) -> EmbeddedKafka:
    """A Tansu broker on ``port`` (else a free one), checked to be the one listening there: were another server
    there first, this one would exit and the test would talk to the other; then it tries another free port."""
    for _ in range(5):
        server = Broker(port or free_port()).start()
        if _listens(server, server.port):
            return server
        server.stop()
        if port is not None:
            break
    raise AssertionError(f"could not start a broker of our own (last port {server.port})")


def _listens(server: EmbeddedKafka, port: int) -> bool:
    process = server._process
    if process is None or process.poll() is not None:
        return False
    connections = psutil.Process(process.pid).net_connections(kind="tcp")
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in connections)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    """A small configuration: one site, two queues, three agents, short offer timeouts."""
    path = tmp_path / "kefu.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@pytest.fixture
def escalation_config_path(tmp_path: Path) -> Path:
    """CONFIG with the queues and groups the escalation policies name: the service checks its targets at start."""
    path = tmp_path / "kefu-escalation.yaml"
    path.write_text(
        CONFIG.replace("  agents:\n", ESCALATION_QUEUES + "  agents:\n" + ESCALATION_AGENT), encoding="utf-8"
    )
    return path


ESCALATION_QUEUES = (
    "".join(
        f"    - {{id: {queue}, name: {queue}, channels: [webchat], group: {group}}}\n"
        for queue, group in (("technical", "engineers"), ("key-accounts", "tam"), ("complaints", "supervisors"))
    )
    + "    - {id: crisis, name: crisis, channels: [webchat], group: crisis}\n"
)
ESCALATION_AGENT = "    - {id: duty, name: Duty, groups: [tam, supervisors, crisis], capacity: {webchat: 1}}\n"

SITE_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ALICE_TOKEN = "test-token-alice-000000"
BOB_TOKEN = "test-token-bob-0000000"
SUPERVISOR_TOKEN = "test-token-supervisor-0"
ADMIN_TOKEN = "test-token-admin-000000"

CONFIG = f"""
channels:
  webchat:
    - {{id: shop, name: Test shop, secrets: [{SITE_SECRET}]}}
routing:
  default_queue: presales
  routes:
    - {{channel: webchat, account: shop, queue: presales}}
  queues:
    - {{id: presales, name: Presales, channels: [webchat], skills: {{presales: 1}}, priority: 10,
        offer_timeout_seconds: 1}}
    - {{id: returns, name: Returns, channels: [webchat], skills: {{returns: 2}}, priority: 20}}
  agents:
    - {{id: alice, name: Alice, groups: [tier1], skills: {{presales: 4}}, capacity: {{webchat: 2}},
        initial_presence: available}}
    - {{id: bob, name: Bob, groups: [tier1], skills: {{presales: 2}}, capacity: {{webchat: 1}},
        initial_presence: away}}
    - {{id: chen, name: Chen, groups: [engineers], skills: {{technical: 5, returns: 2}}, capacity: {{webchat: 1}},
        initial_presence: available}}
auth:
  tokens:
    - {{token: {ALICE_TOKEN}, role: agent, agent_id: alice}}
    - {{token: {BOB_TOKEN}, role: agent, agent_id: bob}}
    - {{token: {SUPERVISOR_TOKEN}, role: supervisor}}
    - {{token: {ADMIN_TOKEN}, role: admin}}
"""
