"""Errors of the escalation service's domain, each with the HTTP answer it gets (``kefu.errors``: status and code).

EscalationError          400 escalation_error
├── TargetNotAllowed     422 unknown_target: the policy has no such target, or does not allow it by hand
└── AlreadyEscalated     409 already_escalated: the contact was already escalated for that trigger

Two more refusals live beside the cases they refuse, in ``domain.cases``, and declare their answers the same way:
``CaseClosed`` (409 case_closed, a ValueError: the case is resolved or cancelled, or not in a state the action applies
to) and ``UnknownCase`` (404 unknown_case, a LookupError: no case has that id).
"""

from kefu.errors import ServiceError


class EscalationError(ServiceError, ValueError):
    """Base of the escalation service's domain errors; still a ValueError (each refuses a value a caller gave: a
    target, a contact), as code that caught it as one expects."""

    status, code = 400, "escalation_error"


class TargetNotAllowed(EscalationError):
    """A manual escalation to a target the policy does not know or does not allow by hand."""

    status, code = 422, "unknown_target"


class AlreadyEscalated(EscalationError):
    """The contact was already escalated for this trigger; the same contact is never escalated twice for it."""

    status, code = 409, "already_escalated"
