"""The ``routing`` section of the configuration file: skills, groups, classification rules, queues and agents.

Each model checks its own fields; ``RoutingConfig`` checks what crosses models (unknown skills and queues, overflow
cycles, routes, rules and overflows sending a channel to a queue that refuses it, a queue's channel no agent can serve)
and reports every problem with the path of the field at fault, so that
``kefu.config_file`` can name its line. Unreachable queues are not errors (an escalation or a transfer may be the
only way in): ``RoutingConfig.warnings()`` returns them. Fields the engine does not act on yet say so in their
description; they are validated all the same, so a configuration written today keeps its meaning.
"""

from pathlib import Path

from kefu.config_file import parse, parse_section
from services.router.domain.config.agents import AgentConfig
from services.router.domain.config.queues import QueueConfig
from services.router.domain.config.routing import Classification, RoutingConfig, StickyConfig
from services.router.domain.config.rules import CustomerTier, RouteConfig, RuleConfig
from services.router.domain.config.schedule import Hours, Shift


def parse_routing(text: str, origin: Path) -> RoutingConfig:
    """The ``routing`` section of configuration ``text``; ``ConfigError`` names file, line and field of each problem."""
    return parse_section(parse(text, origin), "routing", RoutingConfig)


__all__ = [
    "AgentConfig",
    "Classification",
    "CustomerTier",
    "Hours",
    "QueueConfig",
    "RouteConfig",
    "RoutingConfig",
    "RuleConfig",
    "Shift",
    "StickyConfig",
    "parse_routing",
]
