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

from fastapi import FastAPI

from kefu.config_file import Report
from kefu.logs import configure
from kefu.settings import ServiceSettings
from services.channels.accounts import ChannelsConfig
from services.channels.config import ChannelsSettings
from services.escalation.config import EscalationSettings
from services.router.config import RouterSettings
from tools.config_check import at_start, group_members
from tools.serve import serve as serve_app

if TYPE_CHECKING:
    from services.escalation.bootstrap import Escalation
    from services.router.bootstrap import Router

log = logging.getLogger("kefu.config")

# Each service's app and running resources are imported when that service is built, not with this module: `kefu
# router` then loads the router alone, and a restarted service serves again sooner (importing all three apps cost
# 1.6 s of the router's 3.6 s of imports on a loaded 2-core machine).


def channels_config(settings: ChannelsSettings, *, log_warnings: bool = True) -> ChannelsConfig:
    """The channel accounts of the configuration file."""
    report = at_start([settings.config_path], required=["channels"], log=log if log_warnings else None)
    return report.section("channels", ChannelsConfig)


def router_config(settings: RouterSettings, *, log_warnings: bool = True) -> Report:
    """The configuration file with its routing section."""
    return at_start([settings.config_path], required=["routing"], log=log if log_warnings else None)


def escalation_config(settings: EscalationSettings, *, log_warnings: bool = True) -> Report:
    """The policy checked with the configuration file: its targets against the routing section (the escalation
    service sends the commands that name them; the router need not know the policy)."""
    paths = [settings.config_path, settings.policy_path]
    return at_start(paths, required=["escalation"], log=log if log_warnings else None)


def channels_app(settings: ChannelsSettings | None = None) -> FastAPI:
    from services.channels.app import create_app as create_channels_app

    settings = settings or ChannelsSettings()
    return create_channels_app(settings, channels_config(settings))


def router_app(settings: RouterSettings | None = None) -> FastAPI:
    from services.router.entrypoints.app import create_app as create_router_app

    settings = settings or RouterSettings()
    return create_router_app(settings, router_config(settings))


def escalation_app(settings: EscalationSettings | None = None) -> FastAPI:
    from services.escalation.entrypoints.app import create_app as create_escalation_app

    settings = settings or EscalationSettings()
    checked = escalation_config(settings)
    return create_escalation_app(settings, checked, group_members(checked))


@contextlib.asynccontextmanager
async def router_running(settings: RouterSettings) -> AsyncIterator["Router"]:
    """The router's resources and loops without its HTTP app."""
    from services.router import bootstrap as router_bootstrap

    async with router_bootstrap.running(settings, router_config(settings)) as router:
        yield router


@contextlib.asynccontextmanager
async def escalation_running(settings: EscalationSettings) -> AsyncIterator["Escalation"]:
    """The escalation service's resources and loops without its HTTP app."""
    from services.escalation import bootstrap as escalation_bootstrap

    checked = escalation_config(settings)
    async with escalation_bootstrap.running(settings, checked, group_members(checked)) as escalation:
        yield escalation


def serve(service: str) -> None:
    """Serve ``service`` (channels, router or escalation) from the environment's settings until SIGINT/SIGTERM.

    The configuration is checked before anything else: ``ConfigError`` leaves at once, one line per problem, with the
    process's logging untouched (tests run the command in process). Then logging is
    configured, and the service is built, its configuration's warnings logged as the service logs.
    """
    settings: ServiceSettings
    if service == "channels":
        from services.channels.app import create_app as create_channels_app
        from services.channels.bootstrap import largest_body

        settings = ChannelsSettings()
        channels_config(settings, log_warnings=False)
        configure(level=settings.log_level, json=settings.log_json)
        config = channels_config(settings)
        serve_app(create_channels_app(settings, config), settings, max_body_bytes=largest_body(settings, config))
    elif service == "router":
        settings = RouterSettings()
        router_config(settings, log_warnings=False)
        configure(level=settings.log_level, json=settings.log_json)
        serve_app(router_app(settings), settings)
    else:
        settings = EscalationSettings()
        escalation_config(settings, log_warnings=False)
        configure(level=settings.log_level, json=settings.log_json)
        serve_app(escalation_app(settings), settings)
