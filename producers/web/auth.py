"""Who may use the API, the replay endpoints and the dashboard: the bearer tokens ``ferry api``
accepts (``producers.web.grants``), or a browser session opened by pasting one of them once.
What each may do is its ``Grant``; which scope a route needs is declared in ``producers.web.scopes``.

- API clients send ``Authorization: Bearer <token>``.
- A browser logs in at ``/login``; it gets an opaque session id in an HttpOnly, SameSite=Strict
  cookie. The session (in Redis, by the id's hash) remembers a hash of the token it was opened
  with, so removing a token ends its sessions too, and a changed grant applies to them at once.
- Every state-changing request (anything but GET/HEAD/OPTIONS) authenticated by the cookie must
  carry the session's CSRF token in ``X-CSRF-Token`` (or a ``csrf`` form field): a page on another
  site can make the browser send the cookie, but it cannot read the token.
"""

import hmac
import json
import secrets
from dataclasses import dataclass

import redis
from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from producers import keys
from producers.records import utcnow
from producers.web.grants import Grant, Token, digest
from producers.web.scopes import Scope

COOKIE = "ferry_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_SECONDS = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

bearer_scheme = HTTPBearer(auto_error=False, description="an API token ([api.tokens.<label>])")


@dataclass(frozen=True)
class Principal:
    """Who is asking: ``via`` bearer or session, and the grant of its token (whose label names
    the token without showing it)."""

    via: str
    grant: Grant
    csrf: str | None = None

    @property
    def label(self) -> str:
        return self.grant.label

    def trigger(self) -> str:
        """What the run history records as the replay's trigger."""
        return f"{'dashboard' if self.via == 'session' else 'api'} ({self.label})"


class Guard:
    """Checks requests against the API's bearer tokens and the browser sessions."""

    def __init__(self, client: redis.Redis, tokens: list[Token]) -> None:
        self.redis = client
        self._tokens = list(tokens)
        self._by_digest = {t.digest: t for t in tokens}

    def authorize(self, credentials: HTTPAuthorizationCredentials | None) -> Token:
        """The token given; 401 without one, 403 with one that is not allowed."""
        if credentials is None:
            raise HTTPException(401, "a bearer token is required",
                                headers={"WWW-Authenticate": 'Bearer realm="ferry"'})
        given = credentials.credentials.encode()
        # Compare against every token, constant-time each and without stopping at a match, so
        # timing says nothing about which token (or label) it was.
        found: Token | None = None
        for token in self._tokens:
            if hmac.compare_digest(given, token.secret):
                found = token
        if found is None:
            raise HTTPException(403, "this token is not allowed")
        return found

    # ---- sessions ---------------------------------------------------------------------------
    def login(self, token: str) -> tuple[str, str] | None:
        """(session id, csrf token) when ``token`` is an API token, else None."""
        try:
            found = self.authorize(HTTPAuthorizationCredentials(scheme="Bearer", credentials=token))
        except HTTPException:
            return None
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        data = {"csrf": csrf, "token": found.digest, "label": found.grant.label,
                "created_at": utcnow()}
        self.redis.set(self._key(session_id), json.dumps(data), ex=SESSION_SECONDS)
        return session_id, csrf

    def logout(self, session_id: str | None) -> None:
        if session_id:
            self.redis.delete(self._key(session_id))

    def session(self, request: Request) -> Principal | None:
        session_id = request.cookies.get(COOKIE)
        if not session_id:
            return None
        raw = self.redis.get(self._key(session_id))
        if not raw:
            return None
        data = json.loads(str(raw))
        token = self._by_digest.get(str(data.get("token")))
        if token is None:  # its token was revoked
            self.logout(session_id)
            return None
        return Principal("session", token.grant, str(data["csrf"]))

    @staticmethod
    def _key(session_id: str) -> str:
        return keys.session(digest(session_id))

    # ---- checks -----------------------------------------------------------------------------
    def require(self, request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
        """Bearer token, else a session cookie plus, on a state-changing
        request, the session's CSRF token. 401 with neither."""
        if credentials is not None:
            return Principal("bearer", self.authorize(credentials).grant)
        principal = self.session(request)
        if principal is None:
            self.authorize(None)  # the bearer 401 with its WWW-Authenticate header
            raise HTTPException(401, "a bearer token or a dashboard session is required")
        if request.method not in SAFE_METHODS:
            check_csrf(principal, request.headers.get(CSRF_HEADER))
        return principal

    def viewer(self, request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal | None:
        """For HTML pages: who is looking, or None (the page then redirects to /login)."""
        if credentials is not None:
            return Principal("bearer", self.authorize(credentials).grant)
        return self.session(request)


def check_csrf(principal: Principal, given: str | None) -> None:
    expected = principal.csrf or ""
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(403, "missing or wrong CSRF token (reload the page)")


def check_scope(principal: Principal, scope: Scope) -> None:
    """403, naming the token's label and the scope it lacks, unless its grant holds ``scope``."""
    if not principal.grant.allows(scope):
        raise HTTPException(403, f"the token {principal.label!r} lacks the {scope.value!r} scope "
                                 "this route needs")
