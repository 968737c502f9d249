"""The records of one fetch applied in one transaction (issue 12), each in a savepoint of its own.

A batch handler (``kefu.consume.consume_batches``) opens one transaction, and for each record in turn a ``Steps.step``:
a savepoint, released when the record is applied. The first record that fails has its savepoint rolled back (what it
wrote goes, what the records before it wrote stays) and ``Stopped`` is raised with how many came before it; the
handler commits those and raises ``Stopped`` on to the loop, which applies the failing record alone, with the
retries, backoff and dead-lettering of a single record, and goes on with the records behind it. When the savepoint
cannot be rolled back (the connection is gone), the failure itself is raised: nothing of the batch commits, and the
loop applies the batch's records one by one.

A savepoint costs two statements a record; it buys a failure that costs the batch one more transaction, not the
whole batch applied again (nor, in the router, the memory of decisions that never committed).
"""

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncConnection

from kefu.logs import fields_of, log_context

SAVEPOINTS = True
"""Whether ``Steps`` puts each record in a savepoint (see above); without, a failure rolls back the transaction."""


class Stopped(Exception):  # not an error of its own: the batch stopped at a record that failed
    """The first ``applied`` records of a batch are applied (committed by the handler); the one at ``at`` (by default
    the next) failed with ``cause``; those between were rolled back with it, the ones after it were not tried."""

    def __init__(self, applied: int, cause: Exception, *, at: int | None = None) -> None:
        super().__init__(f"stopped after {applied} records: {type(cause).__name__}")
        self.applied = applied
        self.cause = cause
        self.at = applied if at is None else at


class Steps:
    """The records of a batch applied one after another in ``conn``'s transaction, each in a savepoint."""

    def __init__(self, conn: AsyncConnection, *, savepoints: bool | None = None) -> None:
        self.conn = conn
        self.savepoints = SAVEPOINTS if savepoints is None else savepoints
        self.applied = 0  # records whose step ended (its savepoint released)

    @contextlib.asynccontextmanager
    async def step(self, message: object) -> AsyncIterator[None]:
        """Apply one record (``message``, whose ids every log line of the step carries) in a savepoint; raise
        ``Stopped`` when it fails and its savepoint could be rolled back, else its failure. Without savepoints,
        ``Stopped`` with ``applied`` 0 and ``at`` this record: the caller rolls the transaction back."""
        with log_context(**fields_of(message)):
            if not self.savepoints:
                try:
                    yield
                except Exception as exc:
                    raise Stopped(0, exc, at=self.applied) from exc
                self.applied += 1
                return
            savepoint = await self.conn.begin_nested()
            try:
                yield
            except Exception as exc:
                try:
                    await savepoint.rollback()
                except Exception:
                    raise exc from None  # the transaction is lost with it: nothing of the batch commits
                raise Stopped(self.applied, exc) from exc
            await savepoint.commit()
        self.applied += 1
