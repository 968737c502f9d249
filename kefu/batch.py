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


class Stopped(Exception):  # not an error of its own: the batch stopped at a record that failed
    """The first ``applied`` records of a batch are applied (committed by the handler); the next one failed with
    ``cause``; the ones after it were not tried."""

    def __init__(self, applied: int, cause: Exception) -> None:
        super().__init__(f"stopped after {applied} records: {type(cause).__name__}")
        self.applied = applied
        self.cause = cause


class Steps:
    """The records of a batch applied one after another in ``conn``'s transaction, each in a savepoint."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.applied = 0  # records whose step ended with their savepoint released

    @contextlib.asynccontextmanager
    async def step(self, message: object) -> AsyncIterator[None]:
        """Apply one record (``message``, whose ids every log line of the step carries) in a savepoint; raise
        ``Stopped`` when it fails and its savepoint could be rolled back, else its failure."""
        with log_context(**fields_of(message)):
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
