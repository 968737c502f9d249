"""What a channel adapter gets to work with: settings, accounts, the publisher, the database (replay
tokens, cursors) and an HTTP client for platforms that are pulled from. Built by ``bootstrap``."""

from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine

from services.channels.accounts import ChannelsConfig
from services.channels.common.publisher import ContactPublisher
from services.channels.config import ChannelsSettings


@dataclass
class Channels:
    settings: ChannelsSettings
    config: ChannelsConfig
    publisher: ContactPublisher
    engine: AsyncEngine
    http: httpx.AsyncClient
    adapters: dict[str, Any] = field(default_factory=dict)
    """Per-channel state built by each channel module's ``setup`` (verifiers, ciphers…), by channel name."""


async def channels_of(request: Request) -> Channels:
    """The running channel adapters (a FastAPI dependency)."""
    channels: Channels = request.app.state.channels
    return channels
