"""The platforms of the channels service: each is wired by one entry of ``PLATFORMS``, which must agree with the
configuration file's ``channels`` section and the webhook URLs."""

from typing import Any, get_args

import httpx
import pytest
from fastapi.routing import APIRoute

from services.channels.accounts import ChannelsConfig
from services.channels.app import create_app
from services.channels.common.runtime import Channels
from services.channels.config import ChannelsSettings
from services.channels.exceptions import UnknownAccount
from services.channels.platforms import PLATFORMS
from services.channels.webchat.routes import WEBCHAT
from services.channels.webchat.signature import StandardWebhookVerifier


def test_every_account_list_of_the_configuration_has_its_platform() -> None:
    sections = {platform.section: platform for platform in PLATFORMS}
    assert len(sections) == len(PLATFORMS)
    assert sections.keys() == ChannelsConfig.model_fields.keys()
    for name, field in ChannelsConfig.model_fields.items():
        assert get_args(field.annotation) == (sections[name].account,), name


def test_each_platform_serves_only_its_own_webhook_urls() -> None:
    segments = [platform.segment for platform in PLATFORMS]
    assert len(set(segments)) == len(segments)
    for platform in PLATFORMS:
        paths = {route.path for route in platform.router.routes if isinstance(route, APIRoute)}
        assert paths, platform.section
        assert all(path.startswith(f"/webhooks/{platform.segment}/{{") for path in paths), paths


@pytest.fixture
async def channels() -> Any:
    async with httpx.AsyncClient() as http:
        yield Channels(ChannelsSettings(), publisher=None, engine=None, http=http)  # type: ignore[arg-type]


async def test_an_accounts_state_is_what_its_platform_built_and_others_are_unknown(channels: Channels) -> None:
    config = ChannelsConfig.model_validate(
        {"webchat": [{"id": "shop", "name": "Shop", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}]}
    )
    channels.start(WEBCHAT, config.webchat)
    assert isinstance(channels.account(WEBCHAT, "shop"), StandardWebhookVerifier)
    assert channels.is_webhook_account("webchat/shop")
    assert not channels.is_webhook_account("webchat/other")
    with pytest.raises(UnknownAccount, match="no web chat site 'other'"):
        channels.account(WEBCHAT, "other")


def test_json_answers_are_documented_with_their_schema() -> None:
    document = create_app(ChannelsSettings(), ChannelsConfig()).openapi()

    def answer(path: str, status: str) -> Any:
        return document["paths"][path]["post"]["responses"][status]["content"]["application/json"]["schema"]

    accepted = {"$ref": "#/components/schemas/Accepted"}
    assert answer("/webhooks/webchat/{site_id}", "202") == accepted
    assert answer("/webhooks/email/{inbox_id}", "200") == accepted
    assert answer("/webhooks/douyin/{app_id}", "200")["anyOf"] == [
        {"$ref": "#/components/schemas/Challenge"},
        accepted,
        {"$ref": "#/components/schemas/Ignored"},
    ]
    schemas = document["components"]["schemas"]
    assert schemas["Accepted"]["required"] == ["status", "event_id"]
    assert schemas["Ignored"]["required"] == ["status", "event"]
