"""Wires the channel adapters: accounts from the configuration file, the publisher, the database,
an HTTP client, and each channel module's own state (``setup``), torn down in reverse order."""

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator
from types import ModuleType

import httpx

from kefu import db
from services.channels import douyin, email, phone, webchat, wechat
from services.channels.accounts import ChannelsConfig
from services.channels.common.publisher import ContactPublisher
from services.channels.common.runtime import Channels
from services.channels.config import ChannelsSettings

log = logging.getLogger(__name__)

CHANNEL_MODULES: dict[str, ModuleType] = {
    "webchat": webchat,
    "wechat": wechat,
    "douyin": douyin,
    "email": email,
    "phone": phone,
}
"""Each module has ``router`` (its endpoints) and ``setup(channels)`` (its per-account state; if that
state has ``aclose()``, it is awaited at shutdown)."""


def largest_body(settings: ChannelsSettings, config: ChannelsConfig) -> int:
    """The largest body any webhook takes (``KEFU_MAX_BODY_BYTES``, or an e-mail inbox's own larger limit)."""
    return max([settings.max_body_bytes, *(inbox.max_body_bytes or 0 for inbox in config.email)])


@contextlib.asynccontextmanager
async def running(settings: ChannelsSettings, config: ChannelsConfig) -> AsyncIterator[Channels]:
    """Start the publisher, the database engine and the HTTP client for the checked ``config``; stop them on exit."""
    engine = db.create_engine(settings.database_url, pool_size=5)
    publisher = ContactPublisher(settings.kafka_bootstrap, timeout=settings.publish_timeout_seconds)
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0)) as http:
        channels = Channels(settings, config, publisher, engine, http)
        await publisher.start()
        try:
            for name, module in CHANNEL_MODULES.items():
                channels.adapters[name] = module.setup(channels)
            yield channels
        finally:
            for state in reversed(list(channels.adapters.values())):
                close = getattr(state, "aclose", None)
                if close is not None and inspect.iscoroutinefunction(close):
                    await close()
            await publisher.stop()
            await engine.dispose()
