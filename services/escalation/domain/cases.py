"""Escalation cases: what may happen to a case, and what each change announces.

    open ──acknowledge──▶ acknowledged ──resolve──▶ resolved
      │                        │
      └──────── cancel ────────┴──▶ cancelled

Resolved and cancelled cases are closed: nothing changes them any more.
"""

from enum import StrEnum

from contracts.escalations import EscalationStatus
from kefu.errors import ServiceError


class Action(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    CANCEL = "cancel"


_TRANSITIONS: dict[Action, tuple[frozenset[EscalationStatus], EscalationStatus]] = {
    Action.ACKNOWLEDGE: (frozenset({EscalationStatus.OPEN}), EscalationStatus.ACKNOWLEDGED),
    Action.RESOLVE: (frozenset({EscalationStatus.OPEN, EscalationStatus.ACKNOWLEDGED}), EscalationStatus.RESOLVED),
    Action.CANCEL: (frozenset({EscalationStatus.OPEN, EscalationStatus.ACKNOWLEDGED}), EscalationStatus.CANCELLED),
}


class CaseClosed(ServiceError, ValueError):
    """The case is not in a status the action applies to (resolved or cancelled, or not open for an
    acknowledgement): a conflict with the case as it stands, which the caller may read again."""

    status, code = 409, "case_closed"


class UnknownCase(ServiceError, LookupError):
    """No case has that id; an agent asking about a case of a target it is no member of is told the same."""

    status, code = 404, "unknown_case"

    def __init__(self, case_id: object) -> None:
        super().__init__(f"no escalation case {case_id}")


def status_after(status: EscalationStatus, action: Action) -> EscalationStatus:
    """The status after ``action``; ``CaseClosed`` when it does not apply."""
    allowed, result = _TRANSITIONS[action]
    if status not in allowed:
        raise CaseClosed(f"cannot {action} a case that is {status}")
    return result
