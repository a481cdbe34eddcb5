"""The bare baseline of bench/webhook_ingress.py: FastAPI, one POST route that reads the body and answers 202.

    .venv/bin/python bench/bare_app.py [--host 127.0.0.1] [--port 8001] [--loop asyncio|uvloop]

Served exactly as `autodev web` serves the real app (autodev/serve.py): `uvicorn.Server(config).serve()`
inside the loop autodev/cli.py runs (uvloop where installed, as it is with uvicorn[standard]; --loop asyncio
for the standard library's), uvicorn's "auto" HTTP protocol (httptools when installed), one process,
`lifespan="off"`, `log_config=None` — and with autodev's own logging setup, so uvicorn's access-log line costs
the same in both.
"""

from __future__ import annotations

import argparse
import asyncio

import uvicorn
from fastapi import FastAPI, Request, Response

from autodev.logs import configure_logging


def create_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/github/webhooks")
    async def receive(request: Request) -> Response:
        await request.body()
        return Response(status_code=202)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop", help="as autodev/cli.py")
    args = parser.parse_args()
    configure_logging("INFO")
    config = uvicorn.Config(create_app(), host=args.host, port=args.port, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(server.serve())
    else:
        asyncio.run(server.serve())


if __name__ == "__main__":
    main()
