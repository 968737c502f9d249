"""Wires the channels service: the publisher, the database, an HTTP client, each platform's accounts from the
configuration file (``Platform.setup``), and the replay-token purge; torn down in reverse order."""

import contextlib
from collections.abc import AsyncIterator

import httpx

from kefu import db
from services.channels.accounts import ChannelsConfig
from services.channels.common.publisher import ContactPublisher
from services.channels.common.runtime import Channels, Closable
from services.channels.common.store import purging_replay_tokens
from services.channels.config import ChannelsSettings
from services.channels.platforms import PLATFORMS


def largest_body(settings: ChannelsSettings, config: ChannelsConfig) -> int:
    """The largest body any webhook takes (``KEFU_MAX_BODY_BYTES``, or an e-mail inbox's own larger limit)."""
    return max([settings.max_body_bytes, *(inbox.max_body_bytes or 0 for inbox in config.email)])


@contextlib.asynccontextmanager
async def running(settings: ChannelsSettings, config: ChannelsConfig) -> AsyncIterator[Channels]:
    """Start the publisher, the database engine and the HTTP client for the checked ``config``; stop them on exit,
    in reverse order."""
    engine = db.create_engine(settings.database_url, pool_size=5)
    publisher = ContactPublisher(settings.kafka_bootstrap, timeout=settings.publish_timeout_seconds)
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0)))
        channels = Channels(settings, publisher, engine, http)
        # every stop is registered before its start: a start that fails half-way still closes what it opened
        stack.push_async_callback(engine.dispose)
        stack.push_async_callback(publisher.stop)
        await publisher.start()
        stack.push_async_callback(_close_accounts, channels)
        for platform in PLATFORMS:
            channels.start(platform, getattr(config, platform.section))
        await stack.enter_async_context(purging_replay_tokens(engine, every=settings.replay_purge_interval_seconds))
        yield channels


async def _close_accounts(channels: Channels) -> None:
    """Release what the accounts' states hold, the last built first."""
    for state in reversed(list(channels.states())):
        if isinstance(state, Closable):
            await state.aclose()
