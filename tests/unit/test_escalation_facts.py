"""Who a contact's customer is, for the repeat-contact trigger: the router's record first, then the platform's."""

import uuid
from datetime import UTC, datetime

from contracts import Channel, ContactEvent, Customer, Message, RoutingEvent, RoutingEventType
from services.escalation.adapters.facts import customer_key

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def _message(customer: Customer, channel: Channel = Channel.WEBCHAT) -> ContactEvent:
    return ContactEvent(
        event_id=uuid.uuid4(),
        channel=channel,
        account_id="shop",
        conversation_key="webchat:shop:c1",
        dedup_key="m1",
        customer=customer,
        message=Message(text="你好"),
        occurred_at=NOW,
        received_at=NOW,
    )


def _routing(customer_id: uuid.UUID | None) -> RoutingEvent:
    return RoutingEvent(
        event_id=uuid.uuid4(),
        type=RoutingEventType.QUEUED,
        occurred_at=NOW,
        contact_id=uuid.uuid4(),
        conversation_key="webchat:shop:c1",
        channel=Channel.WEBCHAT,
        queue_id="presales",
        customer_id=customer_id,
    )


def test_the_routers_customer_record_links_identities_across_channels() -> None:
    customer = uuid.uuid4()
    assert customer_key(_routing(customer)) == f"customer:{customer}"
    assert customer_key(_routing(None)) is None  # says nothing: the key from the messages stays


def test_a_business_id_is_shared_across_channels_and_a_platform_id_is_not() -> None:
    member = Customer(platform_id="visitor-1", external_id="member-10086")
    assert customer_key(_message(member)) == customer_key(_message(member, Channel.EMAIL)) == "ext:member-10086"
    visitor = Customer(platform_id="visitor-1")
    assert customer_key(_message(visitor)) == "webchat:visitor-1"
    assert customer_key(_message(visitor, Channel.EMAIL)) == "email:visitor-1"
