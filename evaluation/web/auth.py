"""Who is asking, and whether they may write: the site's guards.

- **Host**: a request whose ``Host`` is not a name this server answers to (the bound address,
  loopback names when bound to loopback, ``--allowed-host`` names) is refused with 400, so a
  DNS-rebinding page cannot read or write through a victim's browser.
- **Origin**: a state-changing request whose ``Origin`` (or, lacking it, ``Referer``) is another
  site is refused with 403.
- **Sessions**: every browser gets a signed cookie (HMAC-SHA256 with a key kept in the store;
  HttpOnly, SameSite=Strict) holding a random nonce and, once signed in, the rater's id. Forms
  carry a CSRF token derived from the nonce; JSON writes with the cookie send it as
  ``X-CSRF-Token``. Requests with ``Authorization: Bearer TOKEN`` carry no cookie to forge and
  need no CSRF token.
- **Raters**: once any rater exists (``headmaps raters add``), every write needs a signed-in
  rater, looked up on every request so a revoked one is refused at once. With none, on loopback
  only, the one local user names themselves once (kept in the signed session).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import PlainTextResponse, Response

from evaluation.web.common import WebError
from store import Store

SESSION_COOKIE = "headmaps_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_AGE = 30 * 24 * 3600
"""Seconds a signed-in session lasts."""
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(netloc: str) -> str:
    """``"Example.org:8000"`` -> ``"example.org"``; ``"[::1]:8000"`` -> ``"::1"``."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SessionData:
    nonce: str
    rater_id: int | None = None
    local_name: str | None = None
    issued: int = field(default_factory=lambda: int(time.time()))
    changed: bool = False
    """To be sent back as the cookie."""
    stored: bool = True
    """Read from a valid cookie (False: made for this request)."""

    @classmethod
    def fresh(cls, *, keep: bool = True) -> SessionData:
        return cls(nonce=secrets.token_urlsafe(18), changed=keep)


@dataclass
class Viewer:
    """Who is asking: a signed-in rater, the local user (no raters, loopback) or nobody."""

    name: str | None
    rater_id: int | None = None
    via: str | None = None
    """``token``, ``session`` or ``local``; None for an anonymous reader."""
    revoked: bool = False
    """The session named a rater who has been revoked since."""


class Guard:
    """The site's guards over one store; ``create_app`` keeps one in ``app.state.guard``."""

    def __init__(self, store: Store, host: str, allowed_hosts: tuple[str, ...] = ()) -> None:
        self.store = store
        self.loopback = is_loopback(host)
        names = {host_name(host) if ":" not in host or host.startswith("[") else host.lower()}
        names |= {h.strip().lower() for h in allowed_hosts if h.strip()}
        if self.loopback:
            names |= set(LOOPBACK_NAMES)
        self.hosts = frozenset(names)
        # Read (or created) now, so that no GET ever writes it.
        self._secret = store.site_secret("session").encode()
        self._raters = False

    # --- keys, raters ---------------------------------------------------------------------------

    @property
    def secret(self) -> bytes:
        return self._secret

    def raters_exist(self) -> bool:
        """Whether the site is closed to anonymous writes (once true, true for good)."""
        if not self._raters:
            self._raters = self.store.has_raters()
        return self._raters

    # --- cookies ------------------------------------------------------------------------------

    def _mac(self, data: bytes) -> str:
        return _b64(hmac.new(self.secret, data, hashlib.sha256).digest())

    def dump(self, session: SessionData) -> str:
        body = json.dumps(
            {"n": session.nonce, "r": session.rater_id, "l": session.local_name, "i": session.issued},
            separators=(",", ":"),
        ).encode()
        return f"{_b64(body)}.{self._mac(body)}"

    def load(self, value: str | None) -> SessionData | None:
        if not value or "." not in value or len(value) > 2000:
            return None
        body_text, _, mac = value.partition(".")
        try:
            body = _unb64(body_text)
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        try:
            data = json.loads(body)
            session = SessionData(
                nonce=str(data["n"]),
                rater_id=int(data["r"]) if data.get("r") is not None else None,
                local_name=str(data["l"])[:200] if data.get("l") else None,
                issued=int(data["i"]),
            )
        except (ValueError, KeyError, TypeError):
            return None
        if session.rater_id is not None and time.time() - session.issued > SESSION_AGE:
            return None
        return session

    def csrf_token(self, session: SessionData) -> str:
        return self._mac(b"csrf:" + session.nonce.encode())

    # --- the middleware's checks ----------------------------------------------------------------

    def refuse(self, request: Request) -> Response | None:
        """The refusal for a request from a foreign host or, writing, from another site."""
        host = host_name(request.headers.get("host", ""))
        if host not in self.hosts:
            shown = request.headers.get("host", "")[:100]
            return PlainTextResponse(
                f"error: this server does not answer to host {shown!r} "
                "(serve --allowed-host NAME adds a name)",
                status_code=400,
            )
        if request.method in UNSAFE:
            origin = request.headers.get("origin")
            if origin is None and request.headers.get("referer"):
                parts = urlsplit(request.headers["referer"])
                origin = f"{parts.scheme}://{parts.netloc}"
            if origin is not None and not self._own(origin, request):
                return PlainTextResponse(
                    f"error: cross-site request refused: {origin[:100]!r} is not this site", status_code=403
                )
        return None

    @staticmethod
    def _own(origin: str, request: Request) -> bool:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # "null" (sandboxed frames, file pages) and the like

        def norm(netloc: str, scheme: str) -> str:
            netloc = netloc.lower()
            default = {"http": ":80", "https": ":443"}.get(scheme, "")
            return netloc[: -len(default)] if default and netloc.endswith(default) else netloc

        return norm(parts.netloc, parts.scheme) == norm(request.headers.get("host", ""), parts.scheme)

    def session_of(self, request: Request, *, keep: bool = False) -> SessionData:
        """The request's session; a new one (no valid cookie) is sent back as a cookie only
        with ``keep`` (a page with forms), so API calls leave no cookie behind."""
        session = getattr(request.state, "session", None)
        if session is None:
            loaded = self.load(request.cookies.get(SESSION_COOKIE))
            session = loaded or SessionData.fresh(keep=False)
            session.stored = loaded is not None
            request.state.session = session
        if keep and not session.stored:
            session.changed = True
        return session

    def set_cookie(self, request: Request, response: Response) -> None:
        session = getattr(request.state, "session", None)
        if session is None or not session.changed:
            return
        response.set_cookie(
            SESSION_COOKIE,
            self.dump(session),
            max_age=SESSION_AGE,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )

    # --- who is asking ------------------------------------------------------------------------

    def viewer(self, request: Request) -> Viewer:
        cached = getattr(request.state, "viewer", None)
        if cached is not None:
            return cached
        found = self._viewer(request)
        request.state.viewer = found
        return found

    def _viewer(self, request: Request) -> Viewer:
        auth = request.headers.get("authorization")
        if auth is not None:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise WebError(401, "Authorization must be 'Bearer TOKEN' (a token from headmaps raters add)")
            rater = self.store.rater_by_token(token.strip())
            if rater is None:
                raise WebError(401, "unknown or revoked rater token")
            return Viewer(name=rater.name, rater_id=rater.id, via="token")
        session = self.session_of(request)
        if session.rater_id is not None:
            rater = self.store.rater_by_id(session.rater_id)
            if rater is None:
                self.sign_out(request)
                return Viewer(name=None, revoked=True)
            return Viewer(name=rater.name, rater_id=rater.id, via="session")
        if session.local_name and self.local_mode():
            return Viewer(name=session.local_name, via="local")
        return Viewer(name=None)

    def local_mode(self) -> bool:
        """No raters and a loopback server: the single local user names themselves."""
        return self.loopback and not self.raters_exist()

    def sign_in(self, request: Request, rater_id: int) -> None:
        """A new session (new nonce: a session fixed before sign-in is worthless) for the rater."""
        request.state.session = SessionData(nonce=secrets.token_urlsafe(18), rater_id=rater_id, changed=True)
        request.state.viewer = None

    def sign_out(self, request: Request) -> None:
        request.state.session = SessionData.fresh()
        request.state.viewer = None

    def remember_local(self, request: Request, name: str) -> None:
        session = self.session_of(request, keep=True)
        if session.local_name != name:
            session.local_name = name
            session.changed = True

    # --- writes -------------------------------------------------------------------------------

    def check_csrf(self, request: Request, token: str | None) -> None:
        """A write from a browser must carry the session's CSRF token (form field or header).
        Exempt: ``Authorization: Bearer`` requests, and, on a local single-user server, JSON
        requests without any cookie (an API client: a foreign page cannot send JSON without a
        CORS preflight this app never grants)."""
        if request.headers.get("authorization") is not None:
            return
        if SESSION_COOKIE not in request.cookies:
            json_body = request.headers.get("content-type", "").startswith("application/json")
            if json_body and self.local_mode():
                return
        expected = self.csrf_token(self.session_of(request))
        if not token or not hmac.compare_digest(token, expected):
            raise WebError(403, "missing or stale CSRF token: reload the page and try again")

    def writer(self, request: Request, claimed: str | None, csrf: str | None) -> str:
        """The rater a write is made as, or the refusal: 401 without a signed-in rater (once
        raters exist), 403 for a missing CSRF token or a ``claimed`` name that is not the
        signed-in one."""
        viewer = self.viewer(request)
        claimed = (claimed or "").strip() or None
        if self.raters_exist():
            if viewer.rater_id is None:
                why = "your rater access was revoked" if viewer.revoked else "sign in as a rater first"
                raise WebError(401, f"{why}: /login takes the token from headmaps raters add")
            self.check_csrf(request, csrf)
            if claimed is not None and claimed != viewer.name:
                raise WebError(403, f"signed in as {viewer.name!r}: cannot rate as {claimed!r}")
            return str(viewer.name)
        if not self.loopback:
            raise WebError(403, "this server is not on loopback and has no raters: headmaps raters add NAME")
        self.check_csrf(request, csrf)
        name = claimed or viewer.name
        if not name:
            raise WebError(422, "enter your name as rater before rating")
        if len(name) > 200:
            raise WebError(422, "rater: at most 200 characters")
        if not request.headers.get("content-type", "").startswith("application/json"):
            self.remember_local(request, name)  # a page's form: asked once (API calls set no cookie)
        return name


def guard_of(request: Request) -> Guard:
    return request.app.state.guard
