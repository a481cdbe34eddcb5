"""What every route of the job pages shares: the store, access rules, templates and static files."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from engine.llm.money import usd
from engine.ports import JobQueue
from engine.settings import Settings
from engine.store.jobs import JobNotFound, JobStore
from engine.views import JobView
from web.access import Access, job_token_ok
from web.present import PYGMENTS_CSS, duration, safe_url

HERE = Path(__file__).parent
STATIC_PREFIX = "/static/web"
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

# The page loads nothing from elsewhere and runs no inline script or style; the referrer policy keeps the
# job's token (in the URL) from leaking to the PR link or anything else the page links to.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


def _load_static() -> dict[str, tuple[bytes, str]]:
    files = {p.name: p.read_bytes() for p in (HERE / "static").iterdir() if p.suffix in STATIC_TYPES}
    files["pygments.css"] = PYGMENTS_CSS.encode()
    return {name: (body, STATIC_TYPES[Path(name).suffix]) for name, body in files.items()}


STATIC_FILES = _load_static()
# A short content hash in each asset URL, so browsers may cache assets and still see a new release at once.
STATIC_VERSIONS = {name: hashlib.sha256(body).hexdigest()[:10] for name, (body, _) in STATIC_FILES.items()}


def static_url(name: str) -> str:
    return f"{STATIC_PREFIX}/{name}?v={STATIC_VERSIONS[name]}"


def _environment() -> Environment:
    """The one Jinja environment of autodev's pages (the home page and the job pages)."""
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,  # job content (titles, diffs, test output) is untrusted
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = static_url
    env.filters["usd"] = usd
    env.filters["duration"] = duration
    env.filters["safe_url"] = safe_url
    return env


PAGES = _environment()


def render_html(name: str, **values: Any) -> str:
    """A page's HTML from web/templates, for pages served outside the job pages' router (the home page)."""
    return PAGES.get_template(name).render(**values)


@dataclass
class WebContext:
    store: JobStore
    settings: Settings
    queue: JobQueue | None
    access: Access
    poll_interval: float
    env: Environment

    @classmethod
    def build(
        cls, store: JobStore, settings: Settings, queue: JobQueue | None, poll_interval: float
    ) -> WebContext:
        return cls(store, settings, queue, Access(settings), poll_interval, PAGES)

    def render(self, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        body = self.env.get_template(name).render(**values)
        return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)

    def not_found(self, request: Request) -> HTMLResponse:
        operator = self.access.operator(request) is not None
        return self.render("not_found.html", 404, operator=operator)

    async def visible_job(
        self, request: Request, job_id: str, token: str | None, *, with_events: bool = True
    ) -> JobView | None:
        """The job if this request may see it: its link token or an operator; None reads as 'not found'."""
        if not JOB_ID.fullmatch(job_id):
            job_token_ok(token, None)
            return None
        try:
            view = await self.store.view(job_id, with_events=with_events)
        except JobNotFound:
            job_token_ok(token, None)
            return None
        if job_token_ok(token, view.access_token) or self.access.operator(request) is not None:
            return view
        return None
