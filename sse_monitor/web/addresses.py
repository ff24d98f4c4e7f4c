"""Client addresses behind proxies, and the proxies trusted to say them.

The address is the peer's, unless the peer is a configured proxy: only then is X-Forwarded-For
read, from the right, skipping the proxies, so a client cannot choose the address it is counted
(and limited) on by sending the header itself. The header is a client's text: a hop that is not
an address is never believed, and only the last MAX_HOPS hops are read.

The common mistake, a proxy in front without SSE_MONITOR_TRUSTED_PROXIES, makes every client
share the proxy's address (one per-client stream limit, one lockout for all): `ForwardedForCheck`
says so once, in the log and on /readyz.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

import structlog
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from sse_monitor.networks import Network, is_within

log = structlog.get_logger("sse_monitor.web.addresses")

# Hops of X-Forwarded-For read, from the right: more proxies than this in a chain is not a
# deployment, and a header of thousands of hops should cost no more than a short one.
MAX_HOPS = 16


def client_address(peer: str | None, headers: Mapping[str, str], trusted: Iterable[Network]) -> str:
    """The address a request is counted on (see the module's docstring)."""
    trusted = tuple(trusted)
    if peer is None:
        return "unknown"
    if not trusted or not is_within(peer, trusted):
        return peer
    forwarded = [hop.strip() for hop in headers.get("x-forwarded-for", "").split(",")]
    hops = [hop for hop in forwarded if hop][-MAX_HOPS:]
    for hop in reversed(hops):
        if not is_within(hop, trusted):
            return hop if _is_address(hop) else peer
    return hops[0] if hops and _is_address(hops[0]) else peer


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class UntrustedForwarding:
    """Whether X-Forwarded-For has come from a peer not trusted to send it: `message` says
    so, from the first such request on, for the life of the process."""

    def __init__(self, trusted: Iterable[Network]) -> None:
        self._trusted = tuple(trusted)
        self.message: str | None = None

    def see(self, peer: str | None, headers: Mapping[str, str]) -> None:
        if self.message is not None or peer is None or "x-forwarded-for" not in headers:
            return
        if is_within(peer, self._trusted):
            return
        self.message = (
            f"X-Forwarded-For came from {peer}, which is not in SSE_MONITOR_TRUSTED_PROXIES, "
            "so the header is ignored: if that is your reverse proxy, every client behind it "
            "shares its address (one per-client stream limit and one wrong-token lockout for "
            f"all). Set SSE_MONITOR_TRUSTED_PROXIES={peer} (or its network) if {peer} is "
            "your proxy."
        )
        log.warning(
            "proxy.untrusted_forwarded_for",
            peer=peer,
            setting="SSE_MONITOR_TRUSTED_PROXIES",
            hint=self.message,
        )


class ForwardedForCheck:
    """ASGI middleware feeding every HTTP request to an UntrustedForwarding until it has
    spoken (then a pass-through)."""

    def __init__(self, app: ASGIApp, forwarding: UntrustedForwarding) -> None:
        self.app = app
        self.forwarding = forwarding

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.forwarding.message is None:
            client = scope.get("client")
            self.forwarding.see(client[0] if client else None, Headers(scope=scope))
        await self.app(scope, receive, send)
