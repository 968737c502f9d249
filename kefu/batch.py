"""The records of one fetch applied in one transaction (issue 12), a ``Steps.step`` each.

A batch handler (``kefu.consume.consume_batches``) opens one transaction and applies each record in turn in a step.
When a record fails, ``Stopped`` says where (``at``) and how many records before it are committed (``applied``); the
loop applies again as a batch those rolled back with it, then that record alone, with the retries, backoff and
dead-lettering of a single record, and goes on with the records behind it. Should the transaction itself be lost (the
connection gone), the failure is raised as it is: nothing of the batch committed, and the loop applies its records one
by one.

A step is no savepoint, by default (``SAVEPOINTS``): a failure rolls back the whole transaction (the handler raises
``Stopped(0, at=...)``) and the records before the failing one are applied again. With savepoints (two statements a
record) only the failing record's step is rolled back and the records before it commit; but PostgreSQL keeps a
subtransaction per savepoint, and it did not pay: ``bench/batches.py``, 1,000 records, medians of three runs
alternating with the tree before issue 12 (one loaded machine, the embedded PostgreSQL as it comes): routing events
into the escalation service 16.9 s before, 19.3 s with savepoints, 11.1 s without; messages to 100 open contacts into
the router 11.1, 8.6 and 7.9 s; 1,000 new contacts (each decides, so each commits) 13.4, 13.4 and 13.8 s. A failing
record is rare; every record would pay for its savepoint. (Since then the router commits a fetch of new contacts once
too: ``services.router.service``.)
"""

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncConnection

from kefu.logs import fields_of, log_context

SAVEPOINTS = False
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
    """The records of a batch applied one after another in ``conn``'s transaction (each in a savepoint, if asked)."""

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
