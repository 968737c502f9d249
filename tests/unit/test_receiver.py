"""The notification receiver of ``kefu dev``: keeps what is signed with its secret, refuses everything else."""

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook

from kefu.config_file import load_section
from services.escalation.config import EXAMPLE_POLICY
from services.escalation.domain.policy import EscalationPolicy
from tools.dev import receiver_hooks
from tools.receiver import Notification, ReceiverSettings, create_app, describe, generate_secret

PAYLOAD = {
    "type": "escalation.opened",
    "contact_id": "bb74a2bf-5192-5397-844f-b18886a45624",
    "target": "crisis",
    "queue": "crisis",
    "reason": "safety: '冒烟' in the message",
}


def signed(
    secret: str, body: bytes, *, msg_id: str = "case-1/1/wecom-crisis", at: float | None = None
) -> dict[str, str]:
    """Headers as the escalation notifier sends them (the same library signs)."""
    timestamp = datetime.fromtimestamp(int(time.time() if at is None else at), tz=UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, timestamp, body.decode()),
    }


BODY = json.dumps(PAYLOAD, ensure_ascii=False).encode()
Mangle = Callable[[str, dict[str, str]], dict[str, str]]  # (secret, good headers) -> headers sent


class Receiver:
    def __init__(self) -> None:
        self.secret = generate_secret()
        self.announced: list[Notification] = []
        app = create_app(self.secret, announce=self.announced.append)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://receiver.test")

    async def listed(self) -> list[dict[str, object]]:
        response = await self.client.get("/notifications")
        assert response.status_code == 200
        return list(response.json())


async def test_a_signed_notification_is_kept_listed_and_announced_once() -> None:
    receiver = Receiver()
    headers = signed(receiver.secret, BODY)
    for _ in range(2):  # delivery is at least once: the retry carries the same webhook-id
        response = await receiver.client.post("/hooks/wecom-crisis", content=BODY, headers=headers)
        assert response.status_code == 200, response.text
    assert response.json() == {"status": "duplicate"}
    (kept,) = await receiver.listed()
    assert kept["hook"] == "wecom-crisis"
    assert kept["webhook_id"] == "case-1/1/wecom-crisis"
    assert kept["payload"] == PAYLOAD
    assert [n.webhook_id for n in receiver.announced] == ["case-1/1/wecom-crisis"]
    line = describe(receiver.announced[0])
    assert line.startswith("notified wecom-crisis: type=escalation.opened contact_id=bb74a2bf")
    assert "queue=crisis" in line and "冒烟" in line


@pytest.mark.parametrize(
    ("problem", "mangle", "detail"),
    [
        ("another secret", lambda s, h: signed(generate_secret(), BODY), "no signature matches"),
        ("a tampered body", lambda s, h: h, "no signature matches"),
        ("an old timestamp", lambda s, h: signed(s, BODY, at=time.time() - 600), "more than 5 minutes in the past"),
        ("no signature", lambda s, h: {k: v for k, v in h.items() if k != "webhook-signature"}, "missing header"),
        ("a malformed signature", lambda s, h: {**h, "webhook-signature": "v1"}, "malformed"),
    ],
)
async def test_a_bad_signature_is_refused_and_not_kept(problem: str, mangle: Mangle, detail: str) -> None:
    receiver = Receiver()
    headers = mangle(receiver.secret, signed(receiver.secret, BODY))
    body = BODY.replace(b"crisis", b"nothing") if problem == "a tampered body" else BODY
    response = await receiver.client.post("/hooks/wecom-crisis", content=body, headers=headers)
    assert response.status_code == 401, problem
    assert response.json()["error"] == "bad_signature"
    assert detail in response.json()["detail"]
    assert await receiver.listed() == []
    assert receiver.announced == []


async def test_a_signed_body_that_is_not_json_is_a_400() -> None:
    receiver = Receiver()
    response = await receiver.client.post("/hooks/x", content=b"not json", headers=signed(receiver.secret, b"not json"))
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_body"
    assert await receiver.listed() == []


def test_the_secret_is_a_fresh_standard_webhooks_key(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = generate_secret(), generate_secret()
    assert first.startswith("whsec_") and first != second
    Webhook(first)  # the notifier's library accepts it
    monkeypatch.setenv("KEFU_RECEIVER_SECRET", "not-a-key")
    with pytest.raises(ValidationError, match="whsec_"):
        ReceiverSettings()
    monkeypatch.setenv("KEFU_RECEIVER_SECRET", first)
    assert ReceiverSettings().port == 8003


def test_every_webhook_of_the_example_policy_posts_to_the_receiver() -> None:
    policy = load_section(Path(EXAMPLE_POLICY), "escalation", EscalationPolicy)
    every = [hook.name for target in policy.targets.values() for hook in target.notify]
    assert [hook.name for hook in receiver_hooks(policy, 8003)] == every
    assert {"wecom-crisis", "slack-pr"} <= set(every)
    assert receiver_hooks(policy, 9003) == []
