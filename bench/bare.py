"""The ceilings the channel adapters are measured against, under the same uvicorn settings:

* ``/webhooks/{channel}/{account}``: a bare FastAPI POST route;
* ``/signed/{channel}/{account}``: the same plus a Standard Webhooks HMAC check and an awaited
  ``acks=all`` send to the broker — the least any adapter must do.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from standardwebhooks.webhooks import Webhook

from kefu.kafka import create_producer

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 - the public Standard Webhooks test secret
# bench.e2e points the signed route at a topic of its own: the router consumes kefu.contacts.v1, and raw web chat
# bodies there would be dead letters that load it during the measurement
TOPIC = os.environ.get("KEFU_BENCH_TOPIC", "kefu.contacts.v1")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    producer = create_producer(os.environ["KEFU_KAFKA_BOOTSTRAP"])
    await producer.start()
    app.state.producer = producer
    yield
    await producer.stop()


app = FastAPI(lifespan=lifespan)
webhook = Webhook(SECRET)


@app.post("/webhooks/{channel}/{account}")
async def bare(channel: str, account: str, request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"status": "accepted"}, status_code=202)


@app.post("/signed/{channel}/{account}")
async def signed(channel: str, account: str, request: Request) -> JSONResponse:
    body = await request.body()
    webhook.verify(body, dict(request.headers), json_parse=False)
    await app.state.producer.send_and_wait(TOPIC, body, key=account.encode())
    return JSONResponse({"status": "accepted"}, status_code=202)
