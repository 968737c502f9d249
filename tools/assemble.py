"""The composition root: each service built from its settings and its configuration files, checked together as
``kefu config validate`` checks them (``tools.config_check``).

The services do not read or cross-check the configuration themselves: that needs every section's schema, and a
service never imports another. Here, above them, the files are checked (``ConfigError`` lists every error; warnings
are logged), and each service is handed what it runs on: its sections, and for the escalation service the router's
groups, whose members may act on the cases escalated to them.
"""

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from kefu.config_file import Report
from kefu.logs import configure
from tools.config_check import at_start, group_members, log_warnings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from kefu.settings import ServiceSettings
    from services.channels.accounts import ChannelsConfig
    from services.channels.config import ChannelsSettings
    from services.escalation.bootstrap import Escalation
    from services.escalation.config import EscalationSettings
    from services.router.bootstrap import Router
    from services.router.config import RouterSettings

log = logging.getLogger("kefu.config")

# What a service runs on is imported when that service is built, not with this module: `kefu router` loads the
# router's app and settings, and the models of the sections its file has (tools.config_check), not the channels'
# settings and rate limits nor the escalation policy engine; a restarted router serves again sooner (make
# bench-restart: 3.4 s from its process's start to /readyz, 4.0 s when every service's modules were imported).


def _channels_report(settings: "ChannelsSettings", *, log_warnings: bool) -> Report:
    return at_start([settings.config_path], required=["channels"], log=log if log_warnings else None)


def channels_config(settings: "ChannelsSettings", *, log_warnings: bool = True) -> "ChannelsConfig":
    """The channel accounts of the configuration file."""
    from services.channels.accounts import ChannelsConfig

    return _channels_report(settings, log_warnings=log_warnings).section("channels", ChannelsConfig)


def router_config(settings: "RouterSettings", *, log_warnings: bool = True) -> Report:
    """The configuration file with its routing section."""
    return at_start([settings.config_path], required=["routing"], log=log if log_warnings else None)


def escalation_config(settings: "EscalationSettings", *, log_warnings: bool = True) -> Report:
    """The policy checked with the configuration file: its targets against the routing section (the escalation
    service sends the commands that name them; the router need not know the policy)."""
    paths = [settings.config_path, settings.policy_path]
    return at_start(paths, required=["escalation"], log=log if log_warnings else None)


def channels_app(settings: "ChannelsSettings | None" = None, config: "ChannelsConfig | None" = None) -> "FastAPI":
    """The channels service's app; ``config`` is its checked accounts (by default checked here)."""
    from services.channels.app import create_app as create_channels_app
    from services.channels.config import ChannelsSettings

    settings = settings or ChannelsSettings()
    return create_channels_app(settings, config or channels_config(settings))


def router_app(settings: "RouterSettings | None" = None, checked: Report | None = None) -> "FastAPI":
    """The router's app; ``checked`` is its checked configuration (by default checked here)."""
    from services.router.config import RouterSettings
    from services.router.entrypoints.app import create_app as create_router_app

    settings = settings or RouterSettings()
    return create_router_app(settings, checked or router_config(settings))


def escalation_app(settings: "EscalationSettings | None" = None, checked: Report | None = None) -> "FastAPI":
    """The escalation service's app; ``checked`` is its checked configuration (by default checked here)."""
    from services.escalation.config import EscalationSettings
    from services.escalation.entrypoints.app import create_app as create_escalation_app

    settings = settings or EscalationSettings()
    checked = checked or escalation_config(settings)
    return create_escalation_app(settings, checked, group_members(checked))


@contextlib.asynccontextmanager
async def router_running(settings: "RouterSettings") -> AsyncIterator["Router"]:
    """The router's resources and loops without its HTTP app."""
    from services.router import bootstrap as router_bootstrap

    async with router_bootstrap.running(settings, router_config(settings)) as router:
        yield router


@contextlib.asynccontextmanager
async def escalation_running(settings: "EscalationSettings") -> AsyncIterator["Escalation"]:
    """The escalation service's resources and loops without its HTTP app."""
    from services.escalation import bootstrap as escalation_bootstrap

    checked = escalation_config(settings)
    async with escalation_bootstrap.running(settings, checked, group_members(checked)) as escalation:
        yield escalation


def _logging(settings: "ServiceSettings", checked: Report) -> None:
    """The service's logging configured, then its configuration's warnings logged."""
    configure(level=settings.log_level, json=settings.log_json)
    log_warnings(checked, log)


def serve(service: str) -> None:
    """Serve ``service`` (channels, router or escalation) from the environment's settings until SIGINT/SIGTERM.

    The configuration is checked before anything else, once: ``ConfigError`` leaves at once, one line per problem,
    with the process's logging untouched (tests run the command in process). Then logging is configured, the
    configuration's warnings logged as the service logs, and the service is built.
    """
    from tools.serve import serve as serve_app

    settings: ServiceSettings
    max_body_bytes = None
    if service == "channels":
        from services.channels.accounts import ChannelsConfig
        from services.channels.bootstrap import largest_body
        from services.channels.config import ChannelsSettings

        settings = ChannelsSettings()
        checked = _channels_report(settings, log_warnings=False)
        _logging(settings, checked)
        config = checked.section("channels", ChannelsConfig)
        app = channels_app(settings, config)
        max_body_bytes = largest_body(settings, config)
    elif service == "router":
        from services.router.config import RouterSettings

        settings = RouterSettings()
        checked = router_config(settings, log_warnings=False)
        _logging(settings, checked)
        app = router_app(settings, checked)
    else:
        from services.escalation.config import EscalationSettings

        settings = EscalationSettings()
        checked = escalation_config(settings, log_warnings=False)
        _logging(settings, checked)
        app = escalation_app(settings, checked)
    serve_app(app, settings, max_body_bytes=max_body_bytes)
