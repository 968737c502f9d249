"""The signed-publish ceiling of ``bench.e2e``: a Standard Webhooks check and an awaited ``acks=all`` send, nothing
else. As ``bench.bare``'s ``/signed/`` route, but to a topic of its own (``KEFU_BENCH_TOPIC``): the router consumes
``kefu.contacts.v1``, and raw web chat bodies there would be dead letters that load it during the measurement.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from standardwebhooks.webhooks import Webhook

from bench.bare import SECRET
from kefu.kafka import create_producer

TOPIC = os.environ.get("KEFU_BENCH_TOPIC", "kefu.bench.ceiling.v1")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    producer = create_producer(os.environ["KEFU_KAFKA_BOOTSTRAP"])
    await producer.start()
    app.state.producer = producer
    yield
    await producer.stop()


app = FastAPI(lifespan=lifespan)
webhook = Webhook(SECRET)


@app.post("/signed/{channel}/{account}")
async def signed(channel: str, account: str, request: Request) -> JSONResponse:
    body = await request.body()
    webhook.verify(body, dict(request.headers), json_parse=False)
    await app.state.producer.send_and_wait(TOPIC, body, key=account.encode())
    return JSONResponse({"status": "accepted"}, status_code=202)
