"""``kefu demo``: sign and post a customer's message as the web chat widget, or another channel's platform, would."""

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from standardwebhooks.webhooks import Webhook

from kefu.auth import AuthConfig
from kefu.config_file import load_section
from services.channels.accounts import ChannelsConfig
from services.router.domain.config import RoutingConfig
from tools.demo_channels import BUILDERS, DemoRequest, NoAccount

ALICE_DEMO = "Authorization: Bearer demo-token-alice-0001"
# a smoking plug and a threat to call the press: the example policy's crisis lexicon (safety, media) escalates it
CRISIS_DEMO = "空调插头冒烟了，再不处理我就找记者曝光"
_ANSWER_CHARS = 300


def describe(config_path: Path) -> list[str]:
    """Lines naming the demo site and agents of the configuration, for the dev banner."""
    channels = load_section(config_path, "channels", ChannelsConfig)
    routing = load_section(config_path, "routing", RoutingConfig)
    lines = ["", "  web chat sites:"]
    lines += [f"    {site.id}  ({site.name})  secret {site.secrets[0].get_secret_value()}" for site in channels.webchat]
    lines.append("  agents:")
    lines += [
        f"    {a.id:<8} {a.name}  groups={','.join(a.groups)}  skills={a.skills}  starts {a.initial_presence}"
        for a in routing.agents
    ]
    auth = load_section(config_path, "auth", AuthConfig)
    lines.append("  desktop API tokens (Authorization: Bearer …):")
    lines += [
        f"    {t.token.get_secret_value() if t.token else '(kept hashed)':<26} {t.role}"
        f"{f' {t.agent_id}' if t.agent_id else ''}"
        for t in auth.tokens
    ]
    return lines


def signed_request(secret: str, body: bytes, *, msg_id: str | None = None) -> dict[str, str]:
    """Standard Webhooks headers for ``body``, signed now with ``secret``."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    now = datetime.fromtimestamp(int(time.time()), tz=UTC)
    signature = Webhook(secret).sign(msg_id, now, body.decode())
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }


def webchat(config: ChannelsConfig, site_id: str | None, text: str, conversation: str) -> DemoRequest:
    """A visitor's message on a web chat site, signed with the site's first secret."""
    site = next((s for s in config.webchat if site_id in (None, s.id)), None)
    if site is None:
        raise NoAccount(f"no web chat site {site_id!r}" if site_id else "no web chat site in the configuration")
    body = json.dumps(
        {
            "conversation_id": conversation,
            "visitor": {"id": f"visitor-{conversation}", "name": "访客 Demo Visitor", "language": "zh-CN"},
            "message": {"text": text, "sent_at": datetime.now(UTC).isoformat()},
            "page_url": "https://shop.example.com/products/air-conditioner",
        },
        ensure_ascii=False,
    ).encode()
    return DemoRequest(f"/webhooks/webchat/{site.id}", body, signed_request(site.secrets[0].get_secret_value(), body))


CHANNELS = {"webchat": webchat, **BUILDERS}


def run(
    *,
    text: str,
    config_path: Path,
    channel: str,
    site_id: str | None,
    conversation: str,
    channels_url: str,
    router_url: str,
    receiver_url: str,
) -> int:
    """Post one signed message on ``channel`` and print what to do next."""
    config = load_section(config_path, "channels", ChannelsConfig)
    try:
        request = CHANNELS[channel](config, site_id, text, conversation)
    except NoAccount as exc:
        print(f"{exc}: see {config_path}")
        return 2
    response = httpx.post(
        f"{channels_url}{request.path}", params=request.params, content=request.body, headers=request.headers
    )
    # the phone webhook answers TwiML, the others a line of JSON or text
    print(f"POST {request.path} -> {response.status_code} {response.text[:_ANSWER_CHARS]}")
    if response.is_success:
        print(
            "next (alice's demo token):\n"
            f"  curl -s -H '{ALICE_DEMO}' {router_url}/v1/agents/alice/offers\n"
            f"  curl -s -X POST -H '{ALICE_DEMO}' {router_url}/v1/offers/<offer_id>/accept\n"
            "an escalation (the crisis lexicon's, say) notifies the receiver kefu dev runs:\n"
            f"  curl -s {receiver_url}/notifications"
        )
    return 0 if response.is_success else 1
