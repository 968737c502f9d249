"""Errors of the router's domain. The HTTP layer maps them to 4xx answers.

RoutingError
├── UnknownAgent          404
├── UnknownOffer          404
├── UnknownAssignment     404
├── UnknownContact        404
├── UnknownCustomer       404
├── UnknownQueue          404
├── NotYours              403: the offer or assignment belongs to another agent
└── WrongState            409: the offer or assignment is no longer open
"""


class RoutingError(Exception):
    """Base of the router's domain errors."""


class UnknownAgent(RoutingError):
    """No agent has that id."""


class UnknownOffer(RoutingError):
    """No offer has that id."""


class UnknownAssignment(RoutingError):
    """No open assignment has that id."""


class UnknownContact(RoutingError):
    """No contact has that id."""


class UnknownCustomer(RoutingError):
    """No customer has that id."""


class UnknownQueue(RoutingError):
    """No queue has that id."""


class NotYours(RoutingError):
    """The offer or assignment belongs to another agent."""


class WrongState(RoutingError):
    """The offer or assignment is no longer open."""
