"""``make bench-channels``: signed webhooks for every channel against the running channels service,
next to a bare uvicorn endpoint measured in the same run, on the embedded PostgreSQL and broker.

Load comes from wrk (``apt-get install wrk``), one thread, 32 connections, on loopback; the service
runs as one uvicorn worker (uvloop, httptools), as in production.
"""

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.requests import SignedRequest, all_requests
from contracts import ALL_TOPICS
from kefu import kafka
from kefu.settings import EXAMPLE_CONFIG
from tools import migrate
from tools.embedded import EmbeddedKafka, EmbeddedPostgres, free_port, wait_for_port


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def _lua(request: SignedRequest) -> str:
    def quote(text: str) -> str:
        return "[==[" + text + "]==]"

    headers = "\n".join(f"wrk.headers[ {quote(k)} ] = {quote(v)}" for k, v in request.headers.items())
    return f'wrk.method = "{request.method}"\nwrk.body = {quote(request.body.decode("latin-1"))}\n{headers}\n'


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(name: str, url: str, request: SignedRequest, *, seconds: int, connections: int) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False, encoding="latin-1") as script:
        script.write(_lua(request))
    try:
        out = subprocess.run(  # noqa: S603
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name, url + request.path],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors_match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return Result(name, rps, p50, p99, int(errors_match.group(1)) if errors_match else 0)


def _serve(args: list[str], env: dict[str, str], port: int) -> "subprocess.Popen[bytes]":
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        wait_for_port("127.0.0.1", port, timeout=15)
    except TimeoutError:
        process.kill()
        raise SystemExit(f"{' '.join(args)} did not start") from None
    return process


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--only", nargs="*", help="channel request names to run")
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench-channels needs wrk: apt-get install wrk")
        return 2
    data = Path(tempfile.mkdtemp(prefix="kefu-bench-"))
    with EmbeddedPostgres(data / "pg") as postgres, EmbeddedKafka() as broker:
        database_url = postgres.url()
        migrate.upgrade(database_url)
        asyncio.run(kafka.ensure_topics(broker.bootstrap, ALL_TOPICS))
        service_port, bare_port = free_port(), free_port()
        env = {
            **os.environ,
            "KEFU_DATABASE_URL": database_url,
            "KEFU_KAFKA_BOOTSTRAP": broker.bootstrap,
            "KEFU_CONFIG_PATH": str(EXAMPLE_CONFIG),
            "KEFU_PORT": str(service_port),
            "KEFU_LOG_LEVEL": "WARNING",
        }
        uvicorn = [sys.executable, "-m", "uvicorn", "--log-level", "warning", "--no-access-log", "--loop", "uvloop"]
        bare = _serve([*uvicorn, "--http", "httptools", "--port", str(bare_port), "bench.bare:app"], env, bare_port)
        service = _serve([sys.executable, "-m", "tools.cli", "channels"], env, service_port)
        try:
            requests = all_requests(EXAMPLE_CONFIG)
            # the ceilings always take the web chat request: the reference route checks Standard Webhooks
            first = next(iter(requests.values()))
            if options.only:
                requests = {k: v for k, v in requests.items() if k in options.only}
            bare_url = f"http://127.0.0.1:{bare_port}"
            signed = SignedRequest(first.path.replace("/webhooks/", "/signed/", 1), first.body, first.headers)
            results = [
                run_wrk(
                    "bare FastAPI endpoint", bare_url, first, seconds=options.seconds, connections=options.connections
                ),
                run_wrk(
                    "bare + HMAC + acks=all send",
                    bare_url,
                    signed,
                    seconds=options.seconds,
                    connections=options.connections,
                ),
            ]

            for name, request in requests.items():
                with httpx.Client() as client:  # one warm-up request, and proof that it is accepted
                    check = client.request(
                        request.method,
                        f"http://127.0.0.1:{service_port}{request.path}",
                        content=request.body,
                        headers=request.headers,
                    )
                    if not check.is_success:
                        print(f"{name}: warm-up got {check.status_code} {check.text[:200]}")
                        return 1
                results.append(
                    run_wrk(
                        name,
                        f"http://127.0.0.1:{service_port}",
                        request,
                        seconds=options.seconds,
                        connections=options.connections,
                    )
                )
        finally:
            for process in (service, bare):
                process.terminate()
                process.wait()
    ceiling = results[0].rps
    print(
        f"\nwrk -t1 -c{options.connections} -d{options.seconds}s, one uvicorn worker, "
        "Tansu and PostgreSQL embedded, loopback\n"
    )
    print(f"{'endpoint':<34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs bare':>8} {'non-2xx':>8}")
    for result in results:
        print(
            f"{result.name:<34} {result.rps:>9.0f} {result.p50_ms:>8.2f} {result.p99_ms:>8.2f} "
            f"{result.rps / ceiling:>8.2f} {result.errors:>8}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
