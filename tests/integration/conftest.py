"""Real servers for integration tests: an embedded PostgreSQL for the session (a fresh, migrated
database per test) and a fresh Tansu broker per test (it starts in milliseconds)."""

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from contracts import ALL_TOPICS
from kefu import kafka
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


@pytest.fixture
async def database_url(postgres: EmbeddedPostgres) -> AsyncIterator[str]:
    name = f"kefu_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = postgres.url(name)
    await migrate.upgrade_async(url)
    yield url
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    await admin.dispose()


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedKafka]:
    server = EmbeddedKafka().start()
    try:
        await kafka.ensure_topics(server.bootstrap, ALL_TOPICS)
        yield server
    finally:
        server.stop()


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
