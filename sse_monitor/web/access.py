"""Access control: off until a token is set; then viewers read, and admins also act.

A request proves its role with `Authorization: Bearer <token>`, with `?token=` (for curl), or
with the cookie `POST /login` sets for the page (EventSource cannot send headers, but it sends
cookies). The cookie holds the role, an expiry, a random nonce (each login is a session of its
own, so logging out and in again within a second is not refused as the revoked one) and an HMAC
keyed by the token that granted it: never the token itself, and rotating a token ends its
sessions. Tokens are compared in constant time and never written anywhere: not in a log line,
an error, or a response. An address that presents too many wrong tokens is locked out for a
while (`sse_monitor.web.lockout`). `POST /logout` revokes the cookie it ends
(`sse_monitor.web.revocations`), so a copy taken before is refused too. In cluster mode both
are kept in Redis, for every node: a request with a token asks it about the lockout, a request
with a login cookie about that cookie's revocation; a request without either never waits on it.

Everything here reads headers a client chose: the parsers accept an exact shape, bounded in
length, and treat anything else as absent, so no forged value can raise.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import parse_qs

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sse_monitor.networks import Network, is_within
from sse_monitor.web.addresses import UntrustedForwarding, client_address
from sse_monitor.web.bodies import json_object, read_capped
from sse_monitor.web.errors import BadRequest, json_error
from sse_monitor.web.lockout import AddressLockout, TooManyFailures
from sse_monitor.web.revocations import Revocations

log = structlog.get_logger("sse_monitor.web.access")

VIEWER, ADMIN = "viewer", "admin"
COOKIE = "sse_monitor_session"
MAX_LOGIN_BODY = 4096
# A login cookie's exact shape: role, expiry (epoch seconds; 12 digits last until the year
# 33658), nonce, hex HMAC-SHA256. ASCII only: str.isdigit() and int() accept other scripts'
# digits, and int() refuses more than 4300 of them.
SESSION_SHAPE = re.compile(
    r"(admin|viewer)\.([0-9]{1,12})\.([0-9a-f]{16})\.([0-9a-f]{64})", re.ASCII
)
# Cookies of our name looked at per request: a browser sends two at most (one per path).
MAX_SESSION_COOKIES = 4

Endpoint = Callable[[Request], Awaitable[Response]]


class Unauthorized(Exception):
    """No valid credential: 401."""


class Forbidden(Exception):
    """A valid credential without the role this needs: 403."""


@dataclass(frozen=True)
class Login:
    """A login cookie whose signature checked out."""

    role: str
    expires: int
    signature: str


class Access:
    def __init__(
        self,
        viewer_token: str | None,
        admin_token: str | None,
        *,
        login_ttl: float,
        lockout: AddressLockout,
        revocations: Revocations,
        trusted_proxies: Iterable[Network] = (),
    ) -> None:
        self._viewer = viewer_token
        self._admin = admin_token
        self._login_ttl = int(login_ttl)
        self._lockout = lockout
        self._revocations = revocations
        self._trusted = tuple(trusted_proxies)
        self.forwarding = UntrustedForwarding(self._trusted)
        self.refused: Counter[str] = Counter()  # unauthorized / forbidden / locked_out

    @property
    def enabled(self) -> bool:
        return self._viewer is not None or self._admin is not None

    async def role(self, request: Request) -> str | None:
        """What this request may do: admin, viewer, or None (nothing but the open paths).

        A token that is presented must be right (else 401, rather than quietly reading as
        anonymous), and is not even looked at while its address is locked out (429); a cookie
        that is stale or forged is ignored.
        """
        presented = _bearer(request) or request.query_params.get("token")
        if presented:
            return await self._role_of_presented(presented, self._address(request))
        login = await self._login_of(request)
        if login is not None:
            return login.role
        if not self.enabled:
            return ADMIN
        return VIEWER if self._viewer is None else None

    async def require(self, request: Request, needed: str) -> str:
        try:
            role = await self.role(request)
        except Unauthorized:
            self.refused["unauthorized"] += 1
            raise
        except TooManyFailures:
            self.refused["locked_out"] += 1
            raise
        if role is None:
            self.refused["unauthorized"] += 1
            raise Unauthorized("this needs a token: log in, or send Authorization: Bearer")
        if needed == ADMIN and role != ADMIN:
            self.refused["forbidden"] += 1
            raise Forbidden("this needs the admin token")
        return role

    def protect(self, needed: str, endpoint: Endpoint) -> Endpoint:
        """The endpoint, answering 401/403 before it runs when the request may not."""

        async def protected(request: Request) -> Response:
            await self.require(request, needed)
            return await endpoint(request)

        return protected

    def routes(self) -> list[Route]:
        return [
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/api/access", self.describe, methods=["GET"]),
        ]

    async def login(self, request: Request) -> Response:
        token = await _login_token(request)
        address = self._address(request)
        try:
            role = await self._role_of_presented(token, address)
        except TooManyFailures:
            self.refused["locked_out"] += 1
            raise
        except Unauthorized as exc:
            self.refused["unauthorized"] += 1
            log.warning("access.login_failed", client=address)
            return _unauthorized(str(exc))
        log.info("access.login", client=address, role=role)
        response = JSONResponse({"role": role})
        expires = int(time.time()) + self._login_ttl
        response.headers.append(
            "set-cookie", self._cookie(self._login_value(role, expires), request)
        )
        return response

    async def logout(self, request: Request) -> Response:
        """Clears the cookie, and revokes it if it is a valid one: a copy of it (another tab,
        a captured header) is refused from now on, until it expires."""
        for login in await self._logins(request):
            await self._revocations.revoke(login.signature, login.expires)
            log.info("access.logout", client=self._address(request), role=login.role)
        response = JSONResponse({"role": None})
        response.headers.append("set-cookie", self._cookie("", request, max_age=0))
        return response

    async def describe(self, request: Request) -> Response:
        """What this request may do, and whether a login cookie grants it (the page offers
        "Log out" only then)."""
        logged_in = await self._login_of(request) is not None
        return JSONResponse(
            {"enabled": self.enabled, "role": await self.role(request), "session": logged_in}
        )

    def warnings(self) -> list[str]:
        """Deployment mistakes seen so far (for /readyz)."""
        return [self.forwarding.message] if self.forwarding.message else []

    # Tokens and sessions

    def _address(self, request: Request) -> str:
        peer = request.client.host if request.client else None
        return client_address(peer, request.headers, self._trusted)

    async def _role_of_presented(self, presented: str, address: str) -> str:
        await self._lockout.check(address)
        role = self._role_of_token(presented)
        if role is None:
            if await self._lockout.record_failure(address):
                log.warning(
                    "access.locked_out",
                    client=address,
                    failures=self._lockout.limit,
                    window_seconds=self._lockout.window,
                )
            raise Unauthorized("the token is not valid")
        return role

    def _role_of_token(self, presented: str) -> str | None:
        if self._admin is not None and _same(presented, self._admin):
            return ADMIN
        if self._viewer is not None and _same(presented, self._viewer):
            return ADMIN if self._admin is None else VIEWER  # the only token does everything
        return None

    def _key(self, role: str) -> str | None:
        """The token whose holder may have this role."""
        if role == ADMIN:
            return self._admin if self._admin is not None else self._viewer
        return self._viewer if role == VIEWER else None

    def _login_value(self, role: str, expires: int) -> str:
        key = self._key(role)
        assert key is not None
        nonce = secrets.token_hex(8)
        return f"{role}.{expires}.{nonce}.{_sign(key, role, expires, nonce)}"

    async def _login_of(self, request: Request) -> Login | None:
        """The first valid login cookie: one revocation to look up, in the common case."""
        for value in _cookie_values(request, COOKIE):
            login = await self._login_in(value)
            if login is not None:
                return login
        return None

    async def _logins(self, request: Request) -> list[Login]:
        """The request's valid, unexpired, unrevoked login cookies (a stale, forged or
        malformed one is as good as absent)."""
        found = [await self._login_in(value) for value in _cookie_values(request, COOKIE)]
        return [login for login in found if login is not None]

    async def _login_in(self, value: str) -> Login | None:
        shape = SESSION_SHAPE.fullmatch(value)
        if shape is None:
            return None
        role, expires, nonce, signature = shape[1], int(shape[2]), shape[3], shape[4]
        key = self._key(role)
        if key is None or expires < time.time():
            return None
        if not hmac.compare_digest(_sign(key, role, expires, nonce), signature):
            return None
        if await self._revocations.is_revoked(signature):
            return None
        return Login(role, expires, signature)

    def _cookie(self, value: str, request: Request, *, max_age: int | None = None) -> str:
        # No Path: the browser scopes it to the login URL's folder, so behind a proxy at
        # /monitor/ it is sent to /monitor/... only, not to every app on the host.
        age = self._login_ttl if max_age is None else max_age
        cookie = f"{COOKIE}={value}; Max-Age={age}; HttpOnly; SameSite=Strict"
        return cookie + ("; Secure" if self._is_https(request) else "")

    def _is_https(self, request: Request) -> bool:
        """Secure cookies over https, including https ended at a trusted proxy."""
        if request.scope.get("scheme") == "https":  # not request.url: it parses the Host
            return True
        peer = request.client.host if request.client else None
        if peer is None or not is_within(peer, self._trusted):
            return False
        return request.headers.get("x-forwarded-proto", "").split(",")[0].strip() == "https"


async def unauthorized(request: Request, exc: Exception) -> Response:
    return _unauthorized(str(exc))


async def forbidden(request: Request, exc: Exception) -> Response:
    return json_error(403, str(exc))


async def locked_out(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TooManyFailures)
    return json_error(429, str(exc), retry_after_seconds=exc.retry_after)


def _unauthorized(message: str) -> Response:
    response = json_error(401, message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="sse-monitor"'
    return response


def _cookie_values(request: Request, name: str) -> list[str]:
    """Every value of the cookie `name`, in order, from the raw Cookie header(s); at most
    MAX_SESSION_COOKIES. Parsed here rather than by request.cookies, which keeps only one
    value per name and is lenient with syntax we should refuse."""
    values = []
    for header in request.headers.getlist("cookie"):
        for pair in header.split(";"):
            key, equals, value = pair.partition("=")
            if equals and key.strip() == name:
                values.append(value.strip())
                if len(values) == MAX_SESSION_COOKIES:
                    return values
    return values


def _bearer(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def _same(presented: str, token: str) -> bool:
    """Constant time, whatever the lengths: compare digests, not the strings."""
    return hmac.compare_digest(
        hashlib.sha256(presented.encode()).digest(), hashlib.sha256(token.encode()).digest()
    )


def _sign(key: str, role: str, expires: int, nonce: str) -> str:
    message = f"sse-monitor-session|{role}|{expires}|{nonce}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


async def _login_token(request: Request) -> str:
    body = await read_capped(request, MAX_LOGIN_BODY)
    content_type = request.headers.get("content-type", "")
    token: object = None
    if content_type.startswith("application/x-www-form-urlencoded"):
        try:
            token = (parse_qs(body.decode("utf-8"), errors="strict").get("token") or [None])[0]
        except UnicodeDecodeError:
            raise BadRequest("the token must be UTF-8 text", parameter="token") from None
    else:
        token = json_object(body, example='{"token": "..."}').get("token")
    if not isinstance(token, str) or not token:
        raise BadRequest('the body must give the token: {"token": "..."}', parameter="token")
    return token
