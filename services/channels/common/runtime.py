"""The one interface every platform implements (``Platform``) and what a platform gets to work with while the
service runs (``Channels``): settings, the publisher, the database (replay tokens, cursors), an HTTP client for
platforms that are pulled from, and each configured account's state. Built by ``bootstrap``.

A platform is one place (``services/channels/<platform>/``): its account model, its signature check and parser, its
routes, and ``setup``, which turns one configured account into what its webhooks need on every request (verifiers,
ciphers, API clients), built once at startup. The state is typed end to end: ``channels.account(WEBCHAT, site_id)``
is the state ``WEBCHAT.setup`` built, or a 404 naming the platform's kind of account.
"""

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, cast, runtime_checkable

import httpx
from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from services.channels.common.publisher import ContactPublisher
from services.channels.config import ChannelsSettings
from services.channels.exceptions import UnknownAccount


class Account(Protocol):
    """What every account model has: the id its webhooks are addressed by (``/webhooks/<segment>/{id}``)."""

    @property
    def id(self) -> str: ...


@runtime_checkable
class Closable(Protocol):
    """An account state holding something to release at shutdown (a connection, a client of its own)."""

    async def aclose(self) -> None: ...


A = TypeVar("A", bound=Account)
S = TypeVar("S")


@dataclass(frozen=True, eq=False)
class Platform(Generic[A, S]):
    """One platform's webhooks, as the service wires them (``services.channels.platforms`` lists every one)."""

    section: str
    """Its list of accounts in the ``channels`` section of the configuration file (a ``ChannelsConfig`` field)."""
    account: type[A]
    """The model of one account in that list."""
    segment: str
    """Its webhook URLs: ``/webhooks/<segment>/{account id}[/...]``."""
    noun: str
    """What one account is called in a 404 (``no <noun> '<id>'``)."""
    router: APIRouter
    setup: "Callable[[A, Channels], S]"
    """The state of one configured account, built once at startup; closed at shutdown if it is ``Closable``."""


@dataclass
class Channels:
    """The running service as its webhooks see it; its accounts' states are reached only through ``account``."""

    settings: ChannelsSettings
    publisher: ContactPublisher
    engine: AsyncEngine
    http: httpx.AsyncClient
    _accounts: dict[Platform[Any, Any], Mapping[str, object]] = field(default_factory=dict, repr=False)
    _webhook_accounts: set[str] = field(default_factory=set, repr=False)

    def start(self, platform: Platform[A, S], accounts: Iterable[A]) -> None:
        """Build the state of every one of ``platform``'s configured ``accounts``."""
        states = {account.id: platform.setup(account, self) for account in accounts}
        self._accounts[platform] = states
        self._webhook_accounts.update(f"{platform.segment}/{account_id}" for account_id in states)

    def account(self, platform: Platform[Any, S], account_id: str) -> S:
        """The state of ``platform``'s account ``account_id``; ``UnknownAccount`` (404) if it is not configured."""
        state = self._accounts[platform].get(account_id)
        if state is None:
            raise UnknownAccount(f"no {platform.noun} {account_id!r}")
        return cast(S, state)  # built by platform.setup, which returns S

    def is_webhook_account(self, key: str) -> bool:
        """Whether ``key`` (``<segment>/<account id>``, from a webhook URL) names a configured account."""
        return key in self._webhook_accounts

    def states(self) -> Iterator[object]:
        """Every account's state, platform by platform in the order they started."""
        for states in self._accounts.values():
            yield from states.values()


async def channels_of(request: Request) -> Channels:
    """The running channel adapters (a FastAPI dependency)."""
    channels: Channels = request.app.state.channels
    return channels
