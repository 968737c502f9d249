"""A consumer leaves its group when it stops, in the group's first generation too (Tansu numbers it 0, and aiokafka
leaves only from 1): the service that takes over need not wait for the stopped one's session to expire."""

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from kefu import kafka
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration


async def _members(bootstrap: str, group: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
        ((_error, _group, _state, _type, _protocol, members),) = response.groups
        return [member[0] for member in members]
    finally:
        await admin.close()


async def test_a_stopped_consumer_leaves_its_group_in_the_first_generation(broker: EmbeddedKafka) -> None:
    await kafka.ensure_topics(broker.bootstrap, ["kefu.leave.v1"])
    consumer = kafka.create_consumer(broker.bootstrap, "kefu.leave.v1", group_id="kefu-leave", session_timeout=2000)
    await kafka.start_all(consumer)
    try:
        await consumer.getmany(timeout_ms=100)
        assert await _members(broker.bootstrap, "kefu-leave") == [consumer._coordinator.member_id]
    finally:
        await kafka.stop_all(consumer)
    assert await _members(broker.bootstrap, "kefu-leave") == []
