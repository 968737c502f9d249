"""The channel adapters' ASGI application: the service's skeleton (``kefu.app``) around the channels' resources, with
every platform's webhooks; a refused webhook answers as its error declares (``services.channels.exceptions``) and
is counted by why."""

from functools import partial

from fastapi import FastAPI
from prometheus_client import Counter

from kefu import db, fastpath
from kefu.app import service_app
from services.channels.accounts import ChannelsConfig
from services.channels.bootstrap import running
from services.channels.common.rate_limit import WebhookRateLimit
from services.channels.config import ChannelsSettings
from services.channels.platforms import PLATFORMS

REJECTED = Counter("kefu_channels_rejected_total", "Webhooks refused", ["reason"])


def create_app(settings: ChannelsSettings, config: ChannelsConfig) -> FastAPI:
    """Build the channels app for the checked ``config`` (``tools.assemble`` checks it); the publisher starts in its
    lifespan."""
    routers = [platform.router for platform in PLATFORMS]
    app = service_app(
        "kefu channels",
        partial(running, settings, config),
        name="channels",
        checks=lambda channels: {"database": partial(db.ping, channels.engine), "broker": channels.publisher.reachable},
        routers=routers,
        refused=REJECTED,
    )
    app.add_middleware(WebhookRateLimit, rate=settings.webhook_rate_limit)
    fastpath.install(app, routers)
    return app
