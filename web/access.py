"""Who may see a job: the holder of its link token, or an operator (OPERATOR_TOKEN, by cookie or bearer).

Every comparison is constant-time. The operator cookie and the CSRF token are HMACs of the operator token,
so neither the cookie nor the page ever carries the token itself, and rotating the token logs everyone out.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum

from fastapi import Request

from engine.settings import Settings

OPERATOR_COOKIE = "autodev_operator"
# A token of the same shape as a real one, so an unknown job id costs the same comparison as a known one.
_DUMMY_TOKEN = "x" * 32


class OperatorVia(StrEnum):
    COOKIE = "cookie"
    BEARER = "bearer"


def same(given: str | None, expected: str) -> bool:
    return hmac.compare_digest((given or "").encode(), expected.encode())


def job_token_ok(given: str | None, expected: str | None) -> bool:
    ok = same(given, expected or _DUMMY_TOKEN)
    return ok and expected is not None and bool(given)


class Access:
    def __init__(self, settings: Settings) -> None:
        secret = settings.operator_token.get_secret_value() if settings.operator_token else ""
        self._secret = secret
        self.secure_cookie = settings.public_url.startswith("https://")

    @property
    def operators_enabled(self) -> bool:
        return bool(self._secret)

    def _derive(self, purpose: str) -> str:
        return hmac.new(self._secret.encode(), purpose.encode(), hashlib.sha256).hexdigest()

    def session_value(self) -> str:
        return self._derive("autodev/operator-session")

    def csrf_token(self) -> str:
        return self._derive("autodev/operator-csrf")

    def password_ok(self, given: str) -> bool:
        return self.operators_enabled and same(given, self._secret)

    def operator(self, request: Request) -> OperatorVia | None:
        """How this request proves it comes from an operator, if it does."""
        if not self.operators_enabled:
            return None
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credential and same(credential.strip(), self._secret):
            return OperatorVia.BEARER
        cookie = request.cookies.get(OPERATOR_COOKIE)
        if cookie and same(cookie, self.session_value()):
            return OperatorVia.COOKIE
        return None

    def may_act(self, request: Request, csrf: str | None) -> bool:
        """An operator's POST: a browser (cookie) must also send the form's CSRF token; a bearer call
        need not, since no browser attaches an Authorization header on its own."""
        via = self.operator(request)
        if via is OperatorVia.BEARER:
            return True
        return via is OperatorVia.COOKIE and same(csrf, self.csrf_token())


def safe_next(target: str | None, default: str = "/jobs") -> str:
    """A post-login redirect stays on this site: a local path, never `//host` or a scheme."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return default
