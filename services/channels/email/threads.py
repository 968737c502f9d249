"""One email as a contact event, threaded statelessly.

The conversation is the thread root: the first Message-ID of ``References``, else ``In-Reply-To``, else the
message's own ``Message-ID``. A plus-address token in a recipient of the inbox's own address
(``support+<token>@example.com``) names the conversation directly and wins. The dedup key is the Message-ID; a
message without one gets ``sha256:<hex>`` of its raw MIME (or, for pre-parsed posts, of its headers, addresses,
subject, bodies and attachment hashes).
"""

import hashlib
from datetime import datetime

from contracts import Channel, ContactEvent, Customer, Message
from services.channels.common.ids import conversation_key, customer_id, event_id
from services.channels.email.headers import plus_token
from services.channels.email.inbox import EmailInbox
from services.channels.email.mime import EmailFacts
from services.channels.exceptions import InvalidPayload

MAX_TEXT = 65536
"""Longest message text the contract carries; longer text is cut and ``metadata["truncated"]`` set."""
MAX_ROOT = 300
"""Thread roots and dedup keys longer than this are replaced by ``sha256:<hex>`` of themselves."""


def _bounded(key: str) -> str:
    return key if len(key) <= MAX_ROOT else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def thread_root(facts: EmailFacts, address: str) -> str:
    """The conversation: a plus-address token, else the first References id, else In-Reply-To, else
    the message's own id (or its content hash)."""
    token = plus_token(facts.recipients, address)
    if token:
        return token
    for ids in (facts.references, facts.in_reply_to):
        if ids:
            return _bounded(ids[0])
    return dedup_key(facts)


def dedup_key(facts: EmailFacts) -> str:
    return _bounded(facts.message_id) if facts.message_id else f"sha256:{facts.digest}"


def to_contact_event(inbox: EmailInbox, facts: EmailFacts, received_at: datetime) -> ContactEvent:
    """Normalize one email received on ``inbox``."""
    if facts.sender is None:
        raise InvalidPayload("the email has no valid sender address (From)")
    display_name, sender = facts.sender
    address = customer_id(Channel.EMAIL, sender, "the sender address (From)")
    dedup = dedup_key(facts)
    metadata = {"subject": facts.subject[:998], "provider": inbox.provider.value}
    if facts.message_id:
        metadata["message_id"] = dedup
    if facts.reply_to and facts.reply_to != address:
        metadata["reply_to"] = facts.reply_to[:256]
    text = facts.text
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT]
        metadata["truncated"] = "true"
    return ContactEvent(
        event_id=event_id(Channel.EMAIL, inbox.id, dedup),
        channel=Channel.EMAIL,
        account_id=inbox.id,
        conversation_key=conversation_key(Channel.EMAIL, inbox.id, thread_root(facts, inbox.address)),
        dedup_key=dedup,
        customer=Customer(platform_id=address, display_name=display_name[:256] or None),
        message=Message(text=text, attachments=tuple(facts.attachments)),
        occurred_at=facts.date or received_at,
        received_at=received_at,
        metadata=metadata,
    )
