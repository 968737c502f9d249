"""The channels server's body limit: the service's, or the largest an e-mail inbox allows (``kefu channels``)."""

from services.channels.accounts import ChannelsConfig
from services.channels.bootstrap import largest_body
from services.channels.config import ChannelsSettings

MIB = 1024 * 1024


def inbox(inbox_id: str, **extra: object) -> dict[str, object]:
    address = f"{inbox_id}@shop.example.com"
    return {"id": inbox_id, "name": inbox_id, "address": address, "provider": "raw", "bearer_token": "t" * 24, **extra}


def test_an_inbox_that_allows_more_raises_the_servers_body_limit_to_its_own() -> None:
    settings = ChannelsSettings()
    config = ChannelsConfig.model_validate(
        {"email": [inbox("small", max_body_bytes=1024), inbox("big", max_body_bytes=25 * MIB), inbox("plain")]}
    )
    assert largest_body(settings, config) == 25 * MIB


def test_without_such_an_inbox_the_service_limit_holds() -> None:
    settings = ChannelsSettings(max_body_bytes=4096)
    assert largest_body(settings, ChannelsConfig()) == 4096
    assert (
        largest_body(settings, ChannelsConfig.model_validate({"email": [inbox("small", max_body_bytes=1024)]})) == 4096
    )
