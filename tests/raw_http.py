"""HTTP/1.1 requests written byte by byte: headers no client library would send (a Host of the
attacker's choosing, bytes outside ASCII, repeated or malformed headers)."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        found = [value for key, value in self.headers if key.lower() == name.lower()]
        return found[0] if found else None

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(
    port: int,
    path: str,
    headers: list[tuple[bytes, bytes]],
    *,
    method: bytes = b"GET",
    body: bytes = b"",
    timeout: float = 10,
) -> RawResponse:
    """One request on a fresh connection (closed after it); `headers` go out exactly as given,
    with Host first unless the caller passes its own."""
    lines = [method + b" " + path.encode("latin-1") + b" HTTP/1.1"]
    if not any(name.lower() == b"host" for name, _ in headers):
        lines.append(b"Host: 127.0.0.1:" + str(port).encode())
    lines += [name + b": " + value for name, value in headers]
    lines += [b"Content-Length: " + str(len(body)).encode(), b"Connection: close"]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    pairs = [line.split(":", 1) for line in header_lines]
    return RawResponse(
        status=int(status_line.split()[1]),
        headers=[(name.strip(), value.strip()) for name, value in pairs],
        body=rest,
    )
