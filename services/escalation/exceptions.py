"""Errors of the escalation service's domain. The HTTP layer maps them to 4xx answers.

EscalationError
├── TargetNotAllowed     422: the policy has no such target, or does not allow it by hand
├── AlreadyEscalated     409: the contact was already escalated for that trigger
├── UnknownCase          404: no case has that id (``adapters.cases``)
└── CaseClosed           409: the case is resolved or cancelled, or not in a state the action applies to
"""


class EscalationError(ValueError):
    """Base of the escalation service's domain errors."""


class TargetNotAllowed(EscalationError):
    """A manual escalation to a target the policy does not know or does not allow by hand."""


class AlreadyEscalated(EscalationError):
    """The contact was already escalated for this trigger; the same contact is never escalated twice for it."""
