"""Client addresses behind proxies, and the proxies trusted to say them.

The address is the peer's, unless the peer is a configured proxy: only then is X-Forwarded-For
read, from the right, skipping the proxies, so a client cannot choose the address it is counted
(and limited) on by sending the header itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(raw: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR blocks: `127.0.0.1, 10.0.0.0/8, ::1`."""
    networks = []
    for part in (part.strip() for part in raw.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address or CIDR block") from None
    if not networks:
        raise ValueError("expected comma-separated IP addresses or CIDR blocks")
    return tuple(networks)


def client_address(peer: str | None, headers: Mapping[str, str], trusted: Iterable[Network]) -> str:
    """The address a request is counted on (see the module's docstring)."""
    trusted = tuple(trusted)
    if peer is None:
        return "unknown"
    if not trusted or not is_within(peer, trusted):
        return peer
    forwarded = [hop.strip() for hop in headers.get("x-forwarded-for", "").split(",")]
    hops = [hop for hop in forwarded if hop]
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


def is_within(address: str, networks: tuple[Network, ...]) -> bool:
    """Whether an address (text) is in one of the networks; False for anything not an address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)
