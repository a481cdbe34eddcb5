"""`autodev` — the command line: serve, web, worker, migrate, run, context, eval-localization."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from autodev.config import SettingsError, exit_on_settings_error, load_settings
from autodev.logs import configure_logging

DESCRIPTION = """\
autodev turns a request into a pull request: label an issue `auto-dev`, type `/orchestrate owner/repo <task>`
in Slack, or comment `@<app> revise <instructions>` on a PR. Configuration comes from the environment and
`.env` (see .env.example); with none at all it runs on SQLite and an embedded Redis under ./data/.
"""


def run_loop(main: Coroutine[Any, Any, None], *, uvloop_if_installed: bool) -> None:
    """Run the service's loop. The web process runs on uvloop where it is installed (uvicorn[standard]
    brings it, and uvicorn would pick it itself): ~15 % more webhooks a second. A process with a worker
    stays on asyncio's loop: uvloop's start of a child process costs 2.7 ms of CPU in a 150 MB process
    against 0.35 ms for asyncio's, and a job starts ~30 (git, the tests) — on uvloop the worker's CPU per
    job went 0.18 -> 0.29 s (docs/benchmarks.md)."""
    if uvloop_if_installed:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autodev", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, help_text in (
        ("serve", "run the web app and a worker in one process (one machine); Ctrl-C stops both"),
        ("web", "run only the web app (webhooks, Slack, job pages); scale out with many of these"),
    ):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        sub.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    worker = commands.add_parser(
        "worker",
        help="run only a worker that takes jobs from Redis; run many on one Redis and one database",
        description="Run an ARQ worker. Needs REDIS_URL and DATABASE_URL shared with the web app "
        "(or the embedded defaults of an `autodev serve`/`web` on the same machine).",
    )
    worker.add_argument(
        "--check",
        action="store_true",
        help="only check: exit 0 if a worker on this host recorded its heartbeat in Redis in the last "
        "~10 s, else 1 (a container's health check, like `arq --check`)",
    )
    commands.add_parser(
        "migrate", help="bring the database to the newest schema (Alembic); serve/web/worker also do this"
    )

    from autodev.cmd_context import add_parsers as add_context_parsers
    from autodev.cmd_eval import add_parser as add_eval_parser
    from autodev.cmd_run import add_parser as add_run_parser

    add_run_parser(commands)
    add_context_parsers(commands)
    add_eval_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        return exit_on_settings_error(error)
    configure_logging(settings.log_level, json_lines=settings.log_json, secrets=settings.secret_values())

    if args.command == "worker" and args.check:
        from autodev.health import check_worker

        return check_worker(settings)
    if args.command in ("serve", "web", "worker"):
        from autodev.serve import run_service

        run_loop(
            run_service(
                settings,
                host=getattr(args, "host", "127.0.0.1"),
                port=getattr(args, "port", 8000),
                web=args.command != "worker",
                worker=args.command != "web",
            ),
            uvloop_if_installed=args.command == "web",
        )
        return 0
    if args.command == "migrate":
        from engine.store.db import upgrade_sync

        upgrade_sync(settings.database_url)
        print(f"database at head: {settings.database_url}")
        return 0
    handler = getattr(args, "handler", None)
    if handler is None:
        print(f"autodev: unknown command {args.command}", file=sys.stderr)
        return 2
    return int(handler(args, settings))


if __name__ == "__main__":
    sys.exit(main())
