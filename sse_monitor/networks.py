"""IP networks as settings write them (`127.0.0.1, 10.0.0.0/8, ::1`), and membership in them."""

from __future__ import annotations

import ipaddress

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


def is_within(address: str, networks: tuple[Network, ...]) -> bool:
    """Whether an address (text) is in one of the networks; False for anything not an address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)
