"""The ceiling: a bare FastAPI POST route under the same uvicorn settings as the services."""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI()


@app.post("/webhooks/{channel}/{account}")
async def bare(channel: str, account: str, request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"status": "accepted"}, status_code=202)
