"""douyin webhooks."""

from typing import Any

from fastapi import APIRouter

from services.channels.runtime import Channels

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


def setup(channels: Channels) -> dict[str, Any]:
    """Per-account state of the douyin adapter."""
    return {}
