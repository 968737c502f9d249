"""The WeCom API of customer service (微信客服) as far as the channels service calls it: ``gettoken`` and
``kf/sync_msg``. It checks the corp's credentials and the access token it issued, serves scripted pages by cursor,
records what it was asked, and can be told to fail."""

from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

TOKEN_EXPIRED = {"errcode": 42001, "errmsg": "access_token expired"}


@dataclass
class FakeWecom:
    """gettoken and kf/sync_msg with scripted pages by cursor; records what it was asked."""

    corp_id: str
    secret: str
    port: int = 0
    """Where it listens when served over HTTP (``api_base``); unused in process (``transport``)."""
    pages: dict[str, dict[str, Any]] = field(default_factory=dict)
    """sync_msg answers by request cursor; a cursor without one gets an empty page that stays there."""
    failures: list[dict[str, Any] | int] = field(default_factory=list)
    """Answers (JSON bodies, or HTTP statuses) given to the next sync_msg calls before the pages."""
    answer: Response | None = None
    """When set, the answer to every call, gettoken included (an outage, a proxy's HTML page)."""
    tokens_issued: int = 0
    sync_bodies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def transport(self) -> httpx.ASGITransport:
        """The API in process, for an ``httpx.AsyncClient`` whose base is any URL."""
        return httpx.ASGITransport(app=self.app())

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/cgi-bin/gettoken", response_model=None)
        async def gettoken(corpid: str, corpsecret: str) -> Response | dict[str, Any]:
            if self.answer is not None:
                return self.answer
            if (corpid, corpsecret) != (self.corp_id, self.secret):
                return {"errcode": 40001, "errmsg": "invalid credential"}
            self.tokens_issued += 1
            return {"errcode": 0, "errmsg": "ok", "access_token": f"ACCESS-{self.tokens_issued}", "expires_in": 7200}

        @app.post("/cgi-bin/kf/sync_msg", response_model=None)
        async def sync_msg(access_token: str, request: Request) -> Response | dict[str, Any]:
            if self.answer is not None:
                return self.answer
            if access_token != f"ACCESS-{self.tokens_issued}":
                return {"errcode": 40014, "errmsg": "invalid access_token"}
            body: dict[str, Any] = await request.json()
            self.sync_bodies.append(body)
            if self.failures:
                failure = self.failures.pop(0)
                if isinstance(failure, int):
                    return PlainTextResponse("upstream trouble", status_code=failure)
                return failure
            cursor = str(body["cursor"])
            return self.pages.get(cursor, {"errcode": 0, "next_cursor": cursor, "has_more": 0})

        return app
