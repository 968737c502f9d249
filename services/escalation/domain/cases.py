"""Escalation cases: what may happen to a case, and what each change announces.

    open ──acknowledge──▶ acknowledged ──resolve──▶ resolved
      │                        │
      └──────── cancel ────────┴──▶ cancelled

Resolved and cancelled cases are closed: nothing changes them any more.
"""

from enum import StrEnum

from contracts.escalations import EscalationStatus


class Action(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    CANCEL = "cancel"


_TRANSITIONS: dict[Action, tuple[frozenset[EscalationStatus], EscalationStatus]] = {
    Action.ACKNOWLEDGE: (frozenset({EscalationStatus.OPEN}), EscalationStatus.ACKNOWLEDGED),
    Action.RESOLVE: (frozenset({EscalationStatus.OPEN, EscalationStatus.ACKNOWLEDGED}), EscalationStatus.RESOLVED),
    Action.CANCEL: (frozenset({EscalationStatus.OPEN, EscalationStatus.ACKNOWLEDGED}), EscalationStatus.CANCELLED),
}


class CaseClosed(ValueError):
    """The case is not in a status the action applies to."""


def status_after(status: EscalationStatus, action: Action) -> EscalationStatus:
    """The status after ``action``; ``CaseClosed`` when it does not apply."""
    allowed, result = _TRANSITIONS[action]
    if status not in allowed:
        raise CaseClosed(f"cannot {action} a case that is {status}")
    return result
