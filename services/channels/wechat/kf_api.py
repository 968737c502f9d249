"""The WeCom API calls of customer service (微信客服): ``gettoken`` (cached) and ``kf/sync_msg``.

Every failure (network, HTTP status, not JSON, errcode != 0) is a ``PlatformUnavailable`` (503), so
the doorbell is answered with an error and WeCom retries it. Access tokens and the corp secret
travel in query strings: they are never put in an error, and every log line loses URL query strings
(``kefu.logs``), httpx's request lines included.
"""

import asyncio
import logging
import time
from typing import Any

import httpx
from pydantic import ValidationError

from services.channels.exceptions import PlatformUnavailable
from services.channels.wechat.kf_messages import SyncMsgPage

log = logging.getLogger(__name__)

TOKEN_EXPIRED = frozenset({40014, 42001})
"""errcodes of an invalid or expired access token: fetch a new one and retry once."""

SYNC_LIMIT = 1000


class WecomKfApi:
    """The API of one corp, with its access token cached until shortly before ``expires_in``."""

    def __init__(self, http: httpx.AsyncClient, *, api_base: str, corp_id: str, secret: str) -> None:
        self._http = http
        self._token_url = f"{api_base}/cgi-bin/gettoken"
        self._sync_url = f"{api_base}/cgi-bin/kf/sync_msg"
        self._token_params = {"corpid": corp_id, "corpsecret": secret}
        self._token: str | None = None
        self._expires_at = 0.0
        self._refresh = asyncio.Lock()

    async def access_token(self) -> str:
        """A valid access token, fetched with ``gettoken`` when none is cached or it is about to expire."""
        token = self._token
        if token is not None and time.monotonic() < self._expires_at:
            return token
        async with self._refresh:
            if self._token is not None and time.monotonic() < self._expires_at:
                return self._token
            body = await self._call("gettoken", "GET", self._token_url, params=self._token_params)
            token, expires_in = body.get("access_token"), body.get("expires_in", 7200)
            if not isinstance(token, str) or not token or not isinstance(expires_in, int):
                raise PlatformUnavailable("WeCom gettoken answered without an access_token")
            self._token = token
            # refresh a little early: 5 minutes before, or half-way for short lifetimes
            self._expires_at = time.monotonic() + max(expires_in - 300, expires_in / 2)
            return token

    def forget(self, token: str) -> None:
        """Drop ``token`` from the cache (WeCom said it is invalid or expired)."""
        if self._token == token:
            self._token = None

    async def sync_msg(self, *, cursor: str, token: str, open_kfid: str) -> SyncMsgPage:
        """One page of messages after ``cursor``; a rejected access token is renewed once."""
        payload = {"cursor": cursor, "token": token, "limit": SYNC_LIMIT, "open_kfid": open_kfid}
        for attempt in (1, 2):
            access_token = await self.access_token()
            body = await self._call(
                "kf/sync_msg", "POST", self._sync_url, params={"access_token": access_token}, json=payload, check=False
            )
            errcode = body.get("errcode", 0)
            if errcode in TOKEN_EXPIRED and attempt == 1:
                self.forget(access_token)
                continue
            _check_errcode("kf/sync_msg", body)
            try:
                return SyncMsgPage.model_validate(body)
            except ValidationError as exc:
                raise PlatformUnavailable("WeCom kf/sync_msg answered an unexpected shape") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call(self, name: str, method: str, url: str, *, check: bool = True, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise PlatformUnavailable(f"WeCom {name} failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise PlatformUnavailable(f"WeCom {name} answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise PlatformUnavailable(f"WeCom {name} did not answer JSON") from None
        if not isinstance(body, dict):
            raise PlatformUnavailable(f"WeCom {name} did not answer a JSON object")
        if check:
            _check_errcode(name, body)
        return body


def _check_errcode(name: str, body: dict[str, Any]) -> None:
    errcode = body.get("errcode", 0)
    if errcode != 0:
        errmsg = str(body.get("errmsg", ""))[:120]
        raise PlatformUnavailable(f"WeCom {name} failed: errcode {errcode} {errmsg}".rstrip())
