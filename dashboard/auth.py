"""The dashboard's login: one token, checked on every request but the login form's.

A request is let in when it carries the token as ``Authorization: Bearer TOKEN``, as the password of
basic auth (any user name: scripts, ``curl -u any:TOKEN``), or a session cookie the login form set.
The cookie holds an HMAC of the token, never the token: changing the token (and restarting) logs
every browser out. HttpOnly and SameSite=Strict; Secure when the dashboard serves TLS. Everything
else gets 401: an HTML login form for a browser, a one-line text for anything else. The answer to a
401 names ``Bearer``, not ``Basic``, so that a browser shows the form rather than its own dialog.

Comparisons are constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any

from edgebridge.secret import Secret

__all__ = ["COOKIE", "Login"]

COOKIE = "edgebridge_dashboard"
OPEN_PATHS = ("/login", "/static/dashboard.css", "/static/favicon.svg")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Login:
    """Checks a request's credentials; ``token`` None lets everything in (``no_login``)."""

    def __init__(self, token: Secret | None, secure_cookie: bool) -> None:
        self.token = token
        self.secure_cookie = secure_cookie
        self._session = (hmac.new(token.reveal().encode(), b"edgebridge-dashboard-session",
                                  hashlib.sha256).hexdigest() if token else "")

    def token_matches(self, candidate: str) -> bool:
        if self.token is None:
            return True
        return hmac.compare_digest(candidate.encode(), self.token.reveal().encode())

    def allowed(self, headers: dict[str, str]) -> bool:
        if self.token is None:
            return True
        auth = headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and self.token_matches(value.strip()):
            return True
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return self.token_matches(decoded.partition(":")[2])
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header is no credential, not an error
            return False
        morsel = cookie.get(COOKIE)
        return morsel is not None and hmac.compare_digest(morsel.value.encode(), self._session.encode())

    def cookie_header(self) -> str:
        secure = "; Secure" if self.secure_cookie else ""
        return f"{COOKIE}={self._session}; Path=/; HttpOnly; SameSite=Strict{secure}"


def guard(app: ASGIApp, login: Login, refuse: Callable[[Scope], Any]) -> ASGIApp:
    """An ASGI middleware: requests without the credential get ``refuse(scope)``'s response."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        if login.allowed(headers):
            await app(scope, receive, send)
            return
        await refuse(scope)(scope, receive, send)

    return middleware
