"""Wires the channel adapters: accounts from the configuration file, verifiers, the publisher."""

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from kefu.config_file import load_section
from services.channels.adapters.publisher import ContactPublisher
from services.channels.adapters.signatures import StandardWebhookVerifier
from services.channels.config import ChannelsSettings
from services.channels.domain.accounts import ChannelsConfig


@dataclass
class Channels:
    settings: ChannelsSettings
    publisher: ContactPublisher
    webchat_verifiers: dict[str, StandardWebhookVerifier]


@contextlib.asynccontextmanager
async def running(settings: ChannelsSettings) -> AsyncIterator[Channels]:
    """Start the publisher; stop it on exit."""
    config = load_section(settings.config_path, "channels", ChannelsConfig)
    verifiers = {
        site.site_id: StandardWebhookVerifier([s.get_secret_value() for s in site.secrets]) for site in config.webchat
    }
    publisher = ContactPublisher(settings.kafka_bootstrap, timeout=settings.publish_timeout_seconds)
    await publisher.start()
    try:
        yield Channels(settings, publisher, verifiers)
    finally:
        await publisher.stop()
