"""Hostile HTTP for the fuzz suite: exact bytes on a socket, the gateway's log read as it grows.

httpx and h11 tidy what they send (they refuse raw bytes in a URL, merge repeated headers,
re-encode bodies), so the requests here are written byte by byte and the answers parsed by
hand: what the test generated is what the gateway received.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

from sse_monitor.simulator.state import SimulatedKato
from tests.support.alert_rules import status_rule
from tests.support.gateway import GatewayProcess
from tests.support.http import tls
from tests.support.kato import running_kato

VIEWER_TOKEN = "fuzz-viewer-Tok3n.v1~x"
ADMIN_TOKEN = "fuzz-admin-S3cret.a1~y"
ALLOWED_ORIGIN = "https://ops.allowed.example"
# The rule that fires while the simulated KATO reports itself degraded: a known alert to ack.
DEGRADED_RULE = status_rule("kato_degraded", "degraded", "warning", message="KATO is degraded")
# uvicorn answers a request it cannot parse itself, before the app sees it, in plain text.
UVICORN_PARSE_ERROR = b"Invalid HTTP request received."


@dataclass
class RawResponse:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    raw: bytes = field(repr=False)

    def header(self, name: str) -> bytes | None:
        wanted = name.lower().encode()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    @property
    def from_uvicorn(self) -> bool:
        """uvicorn's own answer to bytes it could not parse as HTTP (the app never ran)."""
        return self.status == 400 and self.body == UVICORN_PARSE_ERROR


def build_request(
    method: bytes,
    target: bytes,
    headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
    body: bytes | None = None,
    *,
    host: bytes = b"127.0.0.1",
    content_length: bool = True,
) -> bytes:
    """A request with exactly these bytes; Host, Connection: close and Content-Length added
    unless the headers already carry them (or content_length=False)."""
    names = {name.lower() for name, _ in headers}
    lines = [method + b" " + target + b" HTTP/1.1"]
    if b"host" not in names:
        lines.append(b"Host: " + host)
    if b"connection" not in names:
        lines.append(b"Connection: close")
    lines += [name + b": " + value for name, value in headers]
    if body is not None and content_length and b"content-length" not in names:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def exchange(
    port: int, request: bytes, *, timeout: float = 10.0, head: bool = False
) -> RawResponse | None:
    """Send the bytes, read one answer (only its head for a stream); None if the gateway
    closed the connection without answering."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # It may have answered and closed already (a refused oversized request): read that.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        return read_response(sock, head=head)


def read_response(sock: socket.socket, *, head: bool = False) -> RawResponse | None:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = _recv(sock)
        if not chunk:
            return None if not buffer else _parse(buffer, b"")
        buffer += chunk
    head_bytes, _, rest = buffer.partition(b"\r\n\r\n")
    response = _parse(head_bytes, b"")
    if head or response.status in (204, 304) or 100 <= response.status < 200:
        return response
    length = response.header("content-length")
    if length is not None:
        rest = _read_exactly(sock, rest, int(length))
    elif b"chunked" in (response.header("transfer-encoding") or b"").lower():
        if (response.header("content-type") or b"").startswith(b"text/event-stream"):
            return response  # a stream never ends: its head is the answer
        rest = _read_chunked(sock, rest)
    else:
        rest += _read_to_end(sock)
    response.body = rest
    return response


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""


def _read_exactly(sock: socket.socket, data: bytes, length: int) -> bytes:
    while len(data) < length:
        chunk = _recv(sock)
        if not chunk:
            break
        data += chunk
    return data[:length]


def _read_chunked(sock: socket.socket, data: bytes) -> bytes:
    while not data.endswith(b"0\r\n\r\n"):
        chunk = _recv(sock)
        if not chunk:
            break
        data += chunk
    body, rest = b"", data
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        body, rest = body + rest[:size], rest[size + 2 :]
    return body


def _read_to_end(sock: socket.socket) -> bytes:
    data = b""
    while chunk := _recv(sock):
        data += chunk
    return data


def _parse(head: bytes, body: bytes) -> RawResponse:
    status_line, *header_lines = head.split(b"\r\n")
    _, status, *reason = status_line.split(b" ", 2)
    headers = []
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers.append((name.strip(), value.strip()))
    return RawResponse(int(status), b" ".join(reason), headers, body, head)


# What must hold after any request


def secret_forms(*secrets: str) -> list[bytes]:
    """Each secret as sent, percent-encoded (either case), and every byte percent-encoded."""
    forms: set[bytes] = set()
    for secret in secrets:
        raw = secret.encode()
        every_byte = "".join(f"%{byte:02X}" for byte in raw)
        forms |= {raw, quote(secret, safe="").encode(), every_byte.encode()}
        forms.add(every_byte.lower().encode())
    return sorted(forms)


Problem = tuple[str, str]  # (kind, what): kinds are 5xx, shape, secret, error


def response_problems(
    response: RawResponse | None, secrets: list[bytes], *, head: bool = False
) -> list[Problem]:
    """What is wrong with an answer: a 5xx, a 4xx not in the JSON error shape (unless it is
    the answer to a HEAD, which has no body), a secret."""
    if response is None:
        return []
    problems = []
    if response.status >= 500:
        problems.append(("5xx", f"{response.status}: {response.body[:300]!r}"))
    elif 400 <= response.status < 500 and not response.from_uvicorn and not head:
        problems += [("shape", problem) for problem in _error_shape_problems(response)]
    for secret in secrets:
        if secret in response.raw or secret in response.body:
            problems.append(("secret", f"a token is in the answer: {response.raw[:600]!r}"))
    return problems


def _error_shape_problems(response: RawResponse) -> list[str]:
    try:
        body = json.loads(response.body)
    except ValueError:
        return [f"{response.status} is not JSON: {response.body[:200]!r}"]
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return [f"{response.status} has no error message: {body!r:.200}"]
    if body.get("status") != response.status:
        return [f"{response.status} says status {body.get('status')!r}"]
    return []


class LogWatch:
    """The gateway's log file, read from where the last look stopped."""

    def __init__(self, path: Path, secrets: list[bytes]) -> None:
        self.path = path
        self.secrets = secrets
        self.offset = 0

    def new_problems(self) -> list[Problem]:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits its turn
        self.offset += len(complete)
        return log_problems(complete, self.secrets)

    def problems_within(self, seconds: float) -> list[Problem]:
        """Problems that show up within a grace period (for work that ends after the answer,
        e.g. a handler still running after its client went away)."""
        deadline = time.monotonic() + seconds
        problems = self.new_problems()
        while not problems and time.monotonic() < deadline:
            time.sleep(0.05)
            problems = self.new_problems()
        return problems


def log_problems(data: bytes, secrets: list[bytes]) -> list[Problem]:
    """Error-level lines, tracebacks, and secrets, in a stretch of JSON-lines log."""
    problems = []
    for line in data.splitlines():
        for secret in secrets:
            if secret in line:
                at = line.index(secret)
                problems.append(("secret", f"log: ...{line[max(0, at - 200) : at + 80]!r}"))
        try:
            entry = json.loads(line)
        except ValueError:
            problems.append(("error", f"not a JSON line: {line[:300]!r}"))
            continue
        if not isinstance(entry, dict):
            continue
        if entry.get("level") in ("error", "critical", "exception") or b"Traceback" in line:
            problems.append(("error", _summary(entry)))
    return problems


def _summary(entry: dict[str, object]) -> str:
    """A failing log line in one line: its level, event, and the exception's last line."""
    exception = str(entry.get("exception", "")).strip().splitlines()
    last = exception[-1] if exception else ""
    return f"{entry.get('level')} {entry.get('event')!r} {entry.get('path', '')} {last}"


# The gateway under attack


@dataclass
class Target:
    """A gateway with both tokens, a CORS allowlist, alert rules and an alert that fired."""

    gateway: GatewayProcess
    alert_id: str
    log: LogWatch

    @property
    def port(self) -> int:
        return self.gateway.port

    def send(self, request: bytes, *, head: bool = False, timeout: float = 10.0) -> RawResponse:
        response = exchange(self.port, request, head=head, timeout=timeout)
        assert response is not None, f"no answer to {request[:300]!r}"
        return response

    def settle(self) -> None:
        """Answer one more request, so that what the last one logs after its answer (uvicorn
        logs an exception once the 500 is sent) is in the log before it is read."""
        assert self.send(build_request(b"GET", b"/healthz")).status == 200

    def problems(
        self, request: bytes, response: RawResponse | None, *, head: bool = False
    ) -> dict[str, list[str]]:
        """Everything wrong after one request, by kind (5xx, shape, secret, error)."""
        self.settle()
        found: dict[str, list[str]] = {"5xx": [], "shape": [], "secret": [], "error": []}
        for kind, what in response_problems(response, SECRETS, head=head) + self.log.new_problems():
            found[kind].append(what)
        return found


SECRETS = secret_forms(VIEWER_TOKEN, ADMIN_TOKEN)


@contextmanager
def hostile_target(tmp: Path, **extra_env: str) -> Iterator[Target]:
    state = SimulatedKato()
    state.set_fault("health", "degraded")  # the rule fires on the first poll
    rules = tmp / "rules.toml"
    rules.write_text(DEGRADED_RULE)
    env = {
        "SSE_MONITOR_TOKEN": VIEWER_TOKEN,
        "SSE_MONITOR_ADMIN_TOKEN": ADMIN_TOKEN,
        "SSE_MONITOR_ALERT_RULES": str(rules),
        "SSE_MONITOR_CORS_ORIGINS": ALLOWED_ORIGIN,
        "SSE_MONITOR_TRUSTED_PROXIES": "127.0.0.1",
        # The fuzz sends thousands of wrong tokens from one address; lockout is tested elsewhere.
        "SSE_MONITOR_AUTH_FAILURE_LIMIT": "1000000",
        **extra_env,
    }
    with (
        running_kato(state) as kato,
        GatewayProcess(kato.url, env=env) as gateway,
    ):
        yield Target(gateway, _fired_alert(gateway), LogWatch(gateway.log_path, SECRETS))


def _fired_alert(gateway: GatewayProcess, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    auth = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    while time.monotonic() < deadline:
        alerts = httpx.get(
            f"{gateway.url}/api/alerts", headers=auth, timeout=5, verify=tls()
        ).json()["alerts"]
        if alerts:
            return alerts[0]["id"]
        time.sleep(0.1)
    raise TimeoutError(f"no alert fired within {timeout} s:\n{gateway.log()}")
