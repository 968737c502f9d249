"""``kefu demo --channel``: each channel's demo request, built for the example configuration, is accepted by the
channels service (its real verifiers) and put on the broker as a contact of that channel."""

import pytest

from contracts import CONTACTS, Channel, ContactEvent
from kefu.config_file import load_section
from kefu.settings import EXAMPLE_CONFIG
from services.channels.accounts import ChannelsConfig
from services.channels.config import ChannelsSettings
from tests.integration.support import read_topic, serving
from tools.assemble import channels_app as create_app
from tools.demo import CHANNELS
from tools.demo_channels import NoAccount
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration

TEXT = "你好，我想咨询一下这款空调的安装服务"


async def test_every_demo_channel_is_accepted_and_published(database_url: str, broker: EmbeddedKafka) -> None:
    config = load_section(EXAMPLE_CONFIG, "channels", ChannelsConfig)
    settings = ChannelsSettings(database_url=database_url, kafka_bootstrap=broker.bootstrap, config_path=EXAMPLE_CONFIG)
    async with serving(create_app(settings)) as client:
        for name, build in CHANNELS.items():
            for _ in range(2):  # two messages of one conversation: one customer, one conversation key
                request = build(config, None, TEXT, "demo-7")
                response = await client.post(
                    request.path, params=request.params, content=request.body, headers=request.headers
                )
                assert response.is_success, (name, response.status_code, response.text)
    records = await read_topic(broker.bootstrap, CONTACTS, at_least=2 * len(CHANNELS))
    events = [ContactEvent.model_validate_json(r.value) for r in records]
    assert {str(e.channel) for e in events} == set(CHANNELS) == {str(c) for c in Channel}
    for channel in Channel:
        mine = [e for e in events if e.channel == channel]
        assert len(mine) == 2, channel
        assert len({e.event_id for e in mine}) == 2, f"{channel}: two deliveries, not one retried"
        if channel == Channel.PHONE:
            assert len({e.customer.platform_id for e in mine}) == 1  # the same caller; each call is its own contact
        else:
            assert len({e.conversation_key for e in mine}) == 1, channel
            assert all(e.message is not None and TEXT in (e.message.text or "") for e in mine), channel


@pytest.mark.parametrize("channel", sorted(CHANNELS))
def test_a_missing_account_is_named(channel: str) -> None:
    build = CHANNELS[channel]
    with pytest.raises(NoAccount, match="in the configuration"):
        build(ChannelsConfig(), None, TEXT, "c")
    with pytest.raises(NoAccount, match="'nope'"):
        build(load_section(EXAMPLE_CONFIG, "channels", ChannelsConfig), "nope", TEXT, "c")
