"""One valid, signed request per channel, built from the example configuration's accounts."""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from kefu.config_file import load_section
from kefu.demo import signed_request
from services.channels.domain.accounts import ChannelsConfig


@dataclass(frozen=True)
class SignedRequest:
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"


def webchat(config: ChannelsConfig) -> SignedRequest:
    site = config.webchat[0]
    body = json.dumps(
        {
            "conversation_id": "bench-1",
            "visitor": {"id": "visitor-bench", "name": "压测访客"},
            "message": {"text": "你好，我想咨询一下这款空调", "sent_at": datetime.now(UTC).isoformat()},
        },
        ensure_ascii=False,
    ).encode()
    return SignedRequest(f"/webhooks/webchat/{site.id}", body, signed_request(site.secrets[0].get_secret_value(), body))


def all_requests(config_path: Path) -> dict[str, SignedRequest]:
    """Every channel's request, by name."""
    config = load_section(config_path, "channels", ChannelsConfig)
    return {"webchat (Standard Webhooks, JSON)": webchat(config)}
