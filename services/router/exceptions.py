"""Errors of the router's domain, each with the HTTP answer it gets (``kefu.errors``: status and code).

RoutingError              400 routing_error
├── UnknownAgent          404 unknown_agent
├── UnknownOffer          404 unknown_offer
├── UnknownAssignment     404 unknown_assignment
├── UnknownContact        404 unknown_contact
├── UnknownCustomer       404 unknown_customer
├── UnknownQueue          404 unknown_queue
├── NotYours              403 not_yours: the offer or assignment belongs to another agent
└── WrongState            409 wrong_state: the offer or assignment is no longer open
"""

from kefu.errors import ServiceError


class RoutingError(ServiceError):
    """Base of the router's domain errors."""

    status, code = 400, "routing_error"


class UnknownAgent(RoutingError):
    """No agent has that id."""

    status, code = 404, "unknown_agent"


class UnknownOffer(RoutingError):
    """No offer has that id."""

    status, code = 404, "unknown_offer"


class UnknownAssignment(RoutingError):
    """No open assignment has that id."""

    status, code = 404, "unknown_assignment"


class UnknownContact(RoutingError):
    """No contact has that id."""

    status, code = 404, "unknown_contact"


class UnknownCustomer(RoutingError):
    """No customer has that id."""

    status, code = 404, "unknown_customer"


class UnknownQueue(RoutingError):
    """No queue has that id."""

    status, code = 404, "unknown_queue"


class NotYours(RoutingError):
    """The offer or assignment belongs to another agent."""

    status, code = 403, "not_yours"


class WrongState(RoutingError):
    """The offer or assignment is no longer open."""

    status, code = 409, "wrong_state"
