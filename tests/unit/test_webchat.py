"""Web chat normalization: the widget's JSON becomes a contact event with stable ids."""

from datetime import UTC, datetime

from contracts import Channel
from services.channels.common.ids import event_id
from services.channels.webchat.webhook import WebchatWebhook, to_contact_event

BODY = {
    "conversation_id": "conv-9",
    "visitor": {"id": "visitor-1", "user_id": "member-10086", "name": "张伟", "language": "zh-CN", "ignored": True},
    "message": {
        "text": "空调不制冷",
        "sent_at": "2026-11-22T17:30:00+08:00",
        "attachments": [{"name": "photo.jpg", "content_type": "image/jpeg", "size": 1024}],
    },
    "page_url": "https://shop.example.com/orders/1",
}


def test_normalization_keeps_what_routing_and_agents_need() -> None:
    received = datetime(2026, 11, 22, 9, 30, 1, tzinfo=UTC)
    event = to_contact_event("demo", "msg_1", WebchatWebhook.model_validate(BODY), received)
    assert event.channel is Channel.WEBCHAT
    assert event.conversation_key == "webchat:demo:conv-9"
    assert event.dedup_key == "msg_1"
    assert event.customer.platform_id == "visitor-1"
    assert event.customer.display_name == "张伟"
    assert event.customer.external_id == "member-10086"
    assert event.message.text == "空调不制冷"
    assert event.message.attachments[0].name == "photo.jpg"
    assert event.occurred_at == datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    assert event.received_at == received
    assert event.metadata == {"page_url": "https://shop.example.com/orders/1"}


def test_a_retry_gets_the_same_event_id_and_other_deliveries_do_not() -> None:
    assert event_id(Channel.WEBCHAT, "demo", "msg_1") == event_id(Channel.WEBCHAT, "demo", "msg_1")
    assert event_id(Channel.WEBCHAT, "demo", "msg_1") != event_id(Channel.WEBCHAT, "demo", "msg_2")
    assert event_id(Channel.WEBCHAT, "demo", "msg_1") != event_id(Channel.WEBCHAT, "other", "msg_1")
