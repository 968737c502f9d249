"""The contact facts one transaction works on, held in memory (issue 12): read and locked once for all the contacts of
a fetch's records (``preload``: three statements however many records), changed in memory as each record applies
(``adapters.facts``), read back by the policy from memory, and written back once before the commit (``flush``: one
statement). A contact the preload did not cover is read (and locked) when first asked for, as before.

The rows read are locked (``FOR UPDATE``) until the transaction ends, so nobody else changes them meanwhile and the
copy in memory stays the truth; the customer's other contacts, which the repeat-contact trigger counts, are read
without a lock, as they always were, and the copy of those this transaction changes wins. A row created here
(``ensure``) is created when the record that creates it applies, so the records before it do not see it.

Times are kept in UTC, as PostgreSQL hands them back: the policy names timers after them (``isoformat``).
"""

import bisect
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, Text, any_, bindparam, case, cast, func, literal, select, union_all, update
from sqlalchemy.dialects.postgresql import ARRAY, UUID, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.escalation.adapters.orm import contact_facts, contact_messages
from services.escalation.adapters.unnest import array_literal, arrays, unnested
from services.escalation.domain.triggers import CLOSED, ContactFacts, Message

MESSAGES_KEPT = 100
"""The newest customer messages the engine looks at; older ones were evaluated when they arrived."""

_NEW_COLUMNS = ("contact_id", "conversation_key", "queued_at", "customer_key")  # what a new contact is created with
_IDS = bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))
_KEYS = bindparam("keys", type_=ARRAY(contact_facts.c.conversation_key.type))
_BY_ID = select(contact_facts).where(contact_facts.c.contact_id == bindparam("id")).with_for_update()
_BY_IDS_OR_CONVERSATIONS = (
    select(contact_facts)
    .where(
        (contact_facts.c.contact_id == any_(_IDS))
        | ((contact_facts.c.conversation_key == any_(_KEYS)) & contact_facts.c.status.not_in(CLOSED))
    )
    .order_by(contact_facts.c.contact_id)  # locked in one order, whoever else locks several
    .with_for_update()
)
_OPEN_OF_CONVERSATION = (
    select(contact_facts.c.contact_id)
    .where(contact_facts.c.conversation_key == bindparam("key"), contact_facts.c.status.not_in(CLOSED))
    .order_by(contact_facts.c.queued_at.desc())
    .limit(1)
)
_ENSURE = insert(contact_facts).on_conflict_do_nothing().returning(*contact_facts.c)
_NEW = unnested("opened", {name: contact_facts.c[name].type for name in _NEW_COLUMNS})
_CREATE = (
    insert(contact_facts)
    .from_select(_NEW_COLUMNS, select(*_NEW.c))
    .on_conflict_do_nothing()
    .returning(*contact_facts.c)
)
_ranked = (
    select(
        contact_messages.c.contact_id,
        contact_messages.c.text,
        contact_messages.c.at,
        contact_messages.c.from_customer,
        func.row_number()
        .over(partition_by=contact_messages.c.contact_id, order_by=contact_messages.c.at.desc())
        .label("newest"),
    )
    .where(contact_messages.c.contact_id == any_(_IDS))
    .subquery()
)
_MESSAGES = (
    select(_ranked.c.contact_id, _ranked.c.text, _ranked.c.at, _ranked.c.from_customer)
    .where(_ranked.c.newest <= MESSAGES_KEPT)
    .order_by(_ranked.c.contact_id, _ranked.c.at)
)
_LOCKED = _BY_IDS_OR_CONVERSATIONS.cte("locked")
_PRELOAD = union_all(  # the rows locked (held), and their customers' and ``customers``' contacts since ``since``
    select(*_LOCKED.c, literal(True).label("held")),
    select(*contact_facts.c, literal(False).label("held")).where(
        contact_facts.c.queued_at >= bindparam("since", type_=contact_facts.c.queued_at.type),
        contact_facts.c.customer_key.in_(select(_LOCKED.c.customer_key))
        | (
            contact_facts.c.customer_key == any_(bindparam("customers", type_=ARRAY(contact_facts.c.customer_key.type)))
        ),
    ),
)
_CUSTOMERS = select(
    contact_facts.c.contact_id, contact_facts.c.customer_key, contact_facts.c.queued_at, contact_facts.c.status
).where(
    contact_facts.c.customer_key == any_(bindparam("customers", type_=ARRAY(contact_facts.c.customer_key.type))),
    contact_facts.c.queued_at >= bindparam("since"),
)
_WRITTEN = ("customer_key", "queue", "tier", "status", "owning_tam", "category", "queued_at", "first_answered_at")
_BACK = unnested(
    "back",
    {name: contact_facts.c[name].type for name in ("contact_id", *_WRITTEN, "transfers")}
    | {"fired": Text(), "touched": Boolean()},  # fired: an array's text (``array_literal``)
)
_WRITE_BACK = (  # every changed row in one statement
    update(contact_facts)
    .where(contact_facts.c.contact_id == _BACK.c.contact_id)
    .values(
        {name: _BACK.c[name] for name in (*_WRITTEN, "transfers")}
        | {
            "fired": cast(_BACK.c.fired, ARRAY(Text)),
            "updated_at": case((_BACK.c.touched, func.now()), else_=contact_facts.c.updated_at),
        }
    )
)


def utc(at: datetime) -> datetime:
    """``at`` as PostgreSQL hands a ``timestamptz`` back."""
    return at.astimezone(UTC)


@dataclass(slots=True)
class FactsRow:
    """A locked ``contact_facts`` row as this transaction has changed it so far."""

    contact_id: uuid.UUID
    conversation_key: str
    customer_key: str | None
    queue: str
    tier: str
    status: str
    owning_tam: str | None
    category: str | None
    queued_at: datetime
    first_answered_at: datetime | None
    transfers: int
    fired: list[str]
    touched: bool = False  # ``updated_at`` is set on write-back (a routing event changed it)

    @classmethod
    def of(cls, row: Any) -> "FactsRow":
        answered = row.first_answered_at
        return cls(
            row.contact_id,
            row.conversation_key,
            row.customer_key,
            row.queue,
            row.tier,
            row.status,
            row.owning_tam,
            row.category,
            utc(row.queued_at),
            None if answered is None else utc(answered),
            row.transfers,
            list(row.fired),
        )


@dataclass(slots=True)
class _Customer:
    """A customer's contacts since ``since`` as read (unlocked), less those this transaction holds."""

    since: datetime
    contacts: dict[uuid.UUID, tuple[datetime, str]] = field(default_factory=dict)  # queued_at, status


class Ledger:
    """The facts of the contacts one transaction has read, locked and changed (see the module docstring)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.discard()

    def discard(self) -> None:
        """Forget every copy (the transaction's changes since the last ``flush`` are being rolled back)."""
        self._rows: dict[uuid.UUID, FactsRow] = {}
        self._created: dict[uuid.UUID, FactsRow] = {}  # by ``create_all``, held once ``ensure`` asks for them
        self._absent: set[uuid.UUID] = set()  # looked for by the preload and not found
        self._conversations: set[str] = set()  # whose open contacts are all among the rows
        self._messages: dict[uuid.UUID, list[Message]] = {}
        self._customers: dict[str, _Customer] = {}
        self._dirty: dict[uuid.UUID, FactsRow] = {}

    async def preload(
        self,
        contact_ids: Collection[uuid.UUID],
        *,
        conversations: Collection[str] = (),
        customers: Collection[str] = (),
        since: datetime | None = None,
    ) -> None:
        """Read and lock at once the rows of ``contact_ids`` and the open contacts of ``conversations``, their
        newest messages, and, with ``since``, the contacts since then of their customers and of ``customers``."""
        values = {"ids": list(contact_ids), "keys": list(conversations), "customers": list(customers), "since": since}
        theirs = []
        for row in await self.conn.execute(_PRELOAD, values):  # one statement (issue 12: a second for customers)
            if row.held:
                self._rows.setdefault(row.contact_id, FactsRow.of(row))
            else:
                theirs.append(row)
        self._conversations.update(conversations)
        self._absent.update(i for i in contact_ids if i not in self._rows)
        # only the locked rows' messages: nobody adds one to a contact whose row another transaction holds
        await self._read_messages([i for i in self._rows if i not in self._messages])
        if since is not None:
            keys = {*customers, *(row.customer_key for row in self._rows.values() if row.customer_key is not None)}
            self._customers_read(self._unread(keys, since), since, theirs)

    async def get(self, contact_id: uuid.UUID) -> FactsRow | None:
        """The contact's row, locked; None for a contact never seen."""
        if (row := self._rows.get(contact_id)) is not None or contact_id in self._absent:
            return row
        found = (await self.conn.execute(_BY_ID, {"id": contact_id})).first()
        if found is None:
            return None
        return self._held(FactsRow.of(found))

    async def open_contact(self, conversation_key: str) -> uuid.UUID | None:
        """The conversation's latest open contact, if any (not locked until asked for with ``get``)."""
        if conversation_key not in self._conversations:
            return (await self.conn.execute(_OPEN_OF_CONVERSATION, {"key": conversation_key})).scalar()
        open_ = [r for r in self._rows.values() if r.conversation_key == conversation_key and r.status not in CLOSED]
        return max(open_, key=lambda r: r.queued_at).contact_id if open_ else None

    def open_contacts(self, conversation_key: str) -> list[uuid.UUID] | None:
        """The conversation's open contacts held, if the preload read them all (else None)."""
        if conversation_key not in self._conversations:
            return None
        return [
            r.contact_id
            for r in self._rows.values()
            if r.conversation_key == conversation_key and r.status not in CLOSED
        ]

    def absent(self, contact_id: uuid.UUID) -> bool:
        """Whether the preload looked for the contact and did not find it (nor has it been created since)."""
        return contact_id in self._absent

    async def create_all(self, rows: list[dict[str, Any]]) -> None:
        """Create the contacts of ``rows`` (the values ``ensure`` would create each with) in one statement, ahead
        of the records that create them: each is held from its ``ensure`` on, so the records before do not see it.
        One someone else created meanwhile is left to its ``ensure``, as before."""
        if rows:
            for row in await self.conn.execute(_CREATE, arrays(_NEW, rows)):
                self._created[row.contact_id] = FactsRow.of(row)

    async def ensure(
        self, contact_id: uuid.UUID, conversation_key: str, at: datetime, customer: str | None
    ) -> FactsRow:
        """The contact's row, created (queued at ``at``) if it does not exist yet."""
        if (row := self._rows.get(contact_id)) is not None:
            return row
        if (row := self._created.pop(contact_id, None)) is not None:
            self._absent.discard(contact_id)
            self._messages[contact_id] = []
            return self._held(row)
        values = {"contact_id": contact_id, "conversation_key": conversation_key, "queued_at": at}
        created = (await self.conn.execute(_ENSURE, values | {"customer_key": customer})).first()
        self._absent.discard(contact_id)
        if created is None:  # someone else created it meanwhile: theirs, locked now
            found = await self.get(contact_id)
            assert found is not None  # it exists: the insert found it
            return found
        self._messages[contact_id] = []  # a message is added to an existing row only: this one had none
        return self._held(FactsRow.of(created))

    def change(self, row: FactsRow, *, touched: bool = False, **values: Any) -> None:
        """Change ``row``'s ``values`` (``touched``: as a routing event does, ``updated_at`` too)."""
        for name, value in values.items():
            setattr(row, name, utc(value) if isinstance(value, datetime) else value)
        row.touched = row.touched or touched
        self._dirty[row.contact_id] = row

    async def messages(self, contact_id: uuid.UUID) -> list[Message]:
        """The contact's newest messages, oldest first."""
        if contact_id not in self._messages:
            await self._read_messages([contact_id])
        return self._messages[contact_id]

    async def add_message(self, contact_id: uuid.UUID, message: Message) -> None:
        """A message recorded on the contact (its row is written by the caller)."""
        kept = await self.messages(contact_id)
        bisect.insort_right(kept, Message(message.text, utc(message.at), message.from_customer), key=_at)
        del kept[:-MESSAGES_KEPT]

    async def load(
        self, contact_id: uuid.UUID, *, customer_contacts_since: datetime | None = None
    ) -> ContactFacts | None:
        """The contact's facts, its row locked; None for a contact never seen. With ``customer_contacts_since``,
        also when each of the customer's contacts since then began."""
        row = await self.get(contact_id)
        if row is None:
            return None
        contacts: list[datetime] = []
        if customer_contacts_since is not None and row.customer_key is not None:
            mine = await self._of_customer(row.customer_key, customer_contacts_since)
            contacts = [queued for queued, _ in mine.values()]
        return ContactFacts(
            contact_id=contact_id,
            queue=row.queue,
            tier=row.tier,
            queued_at=row.queued_at,
            status=row.status,
            owning_tam=row.owning_tam,
            category=row.category,
            messages=tuple(await self.messages(contact_id)),
            transfers=row.transfers,
            first_answered_at=row.first_answered_at,
            customer_contacts=contacts,
            fired=frozenset(row.fired),
        )

    async def latest_of_customer(self, contact_id: uuid.UUID, since: datetime) -> uuid.UUID | None:
        """The customer's latest open contact since ``since`` (the contact itself, or a later one), if it has a key."""
        row = await self.get(contact_id)
        if row is None or row.customer_key is None:
            return None
        theirs = await self._of_customer(row.customer_key, since)
        open_ = [(queued, cid) for cid, (queued, status) in theirs.items() if status not in CLOSED]
        return max(open_)[1] if open_ else None

    async def flush(self) -> None:
        """Write back every row changed since the last flush, in one statement."""
        if not self._dirty:
            return
        rows = [_written(row) for row in self._dirty.values()]
        self._dirty = {}
        await self.conn.execute(_WRITE_BACK, arrays(_BACK, rows))

    def _held(self, row: FactsRow) -> FactsRow:
        self._rows[row.contact_id] = row
        return row

    async def _read_messages(self, contact_ids: Iterable[uuid.UUID]) -> None:
        ids = list(dict.fromkeys(contact_ids))
        if not ids:
            return
        for contact_id in ids:
            self._messages.setdefault(contact_id, [])
        for row in await self.conn.execute(_MESSAGES, {"ids": ids}):
            self._messages[row.contact_id].append(Message(row.text, utc(row.at), row.from_customer))

    async def _read_customers(self, keys: Collection[str], since: datetime) -> None:
        if wanted := self._unread(keys, since):
            self._customers_read(
                wanted, since, await self.conn.execute(_CUSTOMERS, {"customers": wanted, "since": since})
            )

    def _unread(self, keys: Collection[str], since: datetime) -> list[str]:
        """Of the customers ``keys``, those whose contacts since ``since`` are not read yet."""
        return [key for key in keys if key not in self._customers or self._customers[key].since > since]

    def _customers_read(self, keys: Collection[str], since: datetime, rows: Iterable[Any]) -> None:
        """The contacts since ``since`` of the customers ``keys`` are ``rows`` (of theirs and maybe others')."""
        for key in keys:
            self._customers[key] = _Customer(since)
        for row in rows:
            if (customer := self._customers.get(row.customer_key)) is not None and customer.since == since:
                customer.contacts[row.contact_id] = (utc(row.queued_at), row.status)

    async def _of_customer(self, key: str, since: datetime) -> dict[uuid.UUID, tuple[datetime, str]]:
        """The customer's contacts queued since ``since``: those this transaction holds as it holds them."""
        await self._read_customers([key], since)
        read = {cid: seen for cid, seen in self._customers[key].contacts.items() if cid not in self._rows}
        held = {r.contact_id: (r.queued_at, r.status) for r in self._rows.values() if r.customer_key == key}
        return {cid: seen for cid, seen in (read | held).items() if seen[0] >= since}


def _at(message: Message) -> datetime:
    return message.at


def _written(row: FactsRow) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in _WRITTEN}
    return values | {
        "contact_id": row.contact_id,
        "transfers": row.transfers,
        "fired": array_literal(row.fired),
        "touched": row.touched,
    }
