"""Secrets never reach a log line, however a request spells them and at every log level.

The scrubbing rules in-process (fast, and a property over every spelling of `token=`), then a
real gateway process logging at debug level, with credentials in KATO_URL, driven with the
tokens every way a client can send them.
"""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sse_monitor.redact import MASK, Scrubber, scrub, scrub_query
from tests.support.gateway import GatewayProcess, UvicornGateway
from tests.support.kato import Kato
from tests.support.waiting import wait_until

VIEWER = "viewer-token-51c0e9a7b3d2f486"
ADMIN = "admin-token-0d8e27f1a9c4b635"
KATO_USER = "kato-user"
KATO_PASSWORD = "kato:pw@5e1f93"  # needs percent-encoding in a URL: both forms must go
KATO_USERINFO = f"{KATO_USER}:{quote(KATO_PASSWORD, safe='')}"
BASIC = base64.b64encode(f"{KATO_USER}:{KATO_PASSWORD}".encode()).decode()


def access_line(query: str) -> str:
    """The line uvicorn's access log writes for a request with this query string."""
    return f'127.0.0.1:50000 - "GET /api/snapshot?{query} HTTP/1.1" 200'


@pytest.mark.parametrize(
    "query",
    [
        f"token={VIEWER}",
        f"%74oken={VIEWER}",  # Starlette decodes the key: this one is accepted
        f"%74%6F%6B%65%6E={VIEWER}",
        f"%74%6f%6b%65%6e={VIEWER}",
        f"TOKEN={VIEWER}",
        f"T%4FKEN={VIEWER}",
        f"+token={VIEWER}",
        f"%20token%20={VIEWER}",
        f"%2574oken={VIEWER}",  # encoded twice
        f"a=1&token=x&token={VIEWER}",
        f"a=1;token={VIEWER}",
        f"a=b?token={VIEWER}&c=d",
        f"access_token={VIEWER}",
        f"access%5Ftoken={VIEWER}",
        "token=" + "".join(f"%{ord(c):02X}" for c in VIEWER),  # the value encoded
        f"token={VIEWER[:8]};{VIEWER[8:]}",  # a ; inside the value
    ],
)
def test_the_query_scrubber_decodes_each_key(query: str) -> None:
    line = scrub(access_line(query))
    assert VIEWER not in line
    assert VIEWER[8:] not in line
    assert f"={MASK}" in line


def test_a_hostile_query_is_scrubbed_in_linear_time_without_recursion() -> None:
    """Parameters nested in values (`?a=?a=...`) once recursed one level each: a 3 KB URL made
    the log formatter raise RecursionError, and the access line became a logging traceback."""
    nested = "?a=" * 300_000 + "?token=s3cret-value"
    started = time.perf_counter()
    scrubbed = scrub(nested)
    assert "s3cret" not in scrubbed and scrubbed.endswith(f"token={MASK}")
    assert scrub("/a?q=?token=abc&b=1") == f"/a?q=?token={MASK}&b=1"
    assert time.perf_counter() - started < 20  # about 1 s here; quadratic would be hours


def test_other_parameters_are_left_alone() -> None:
    line = access_line("topics=metrics&last_event_id=abc-1&tokens=3")
    assert scrub(line) == line


@given(
    spelling=st.lists(
        st.tuples(st.booleans(), st.booleans(), st.booleans()), min_size=5, max_size=5
    ),
    value=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=16),
)
def test_every_spelling_of_the_token_key_is_scrubbed(
    spelling: list[tuple[bool, bool, bool]], value: str
) -> None:
    """Each letter of `token` in either case, percent-encoded or not, with either hex case."""
    key = ""
    for letter, (upper, encoded, upper_hex) in zip("token", spelling, strict=True):
        letter = letter.upper() if upper else letter
        code = f"%{ord(letter):02X}" if upper_hex else f"%{ord(letter):02x}"
        key += code if encoded else letter
    encoded_value = quote(value, safe="")
    line = scrub(access_line(f"a=1&{key}={encoded_value}&b=2"))
    assert f"{key}={MASK}&b=2" in line
    assert scrub_query(f"?{key}={encoded_value}") == f"?{key}={MASK}"


@pytest.mark.parametrize(
    "text",
    [
        f"> Authorization: Basic {BASIC}",
        f"> authorization: Bearer {VIEWER}",
        f"> Proxy-Authorization: Basic {BASIC}",
        f"< Set-Cookie: sse_monitor_session={VIEWER}; HttpOnly",
        f"> Cookie: other=1; sse_monitor_session={VIEWER}",
        f"headers={{'authorization': 'Bearer {VIEWER}', 'host': 'x'}}",
        f"[(b'host', b'x'), (b'cookie', b'a={VIEWER}')]",
        f'{{"Authorization": "Bearer {VIEWER}"}}',
        f"the request had Bearer {VIEWER} in it",
    ],
)
def test_secret_headers_are_masked_in_any_text(text: str) -> None:
    scrubbed = scrub(text)
    assert VIEWER not in scrubbed
    assert BASIC not in scrubbed
    assert MASK in scrubbed


def kato_scrubber() -> Scrubber:
    return Scrubber.from_secrets(
        tokens=(VIEWER, ADMIN, None),
        urls=(f"http://{KATO_USERINFO}@kato:8000", "redis://:redis-pw-77a1@redis:6379/0", None),
    )


@pytest.mark.parametrize(
    "secret",
    [
        VIEWER,
        ADMIN,
        quote(VIEWER, safe=""),
        base64.b64encode(VIEWER.encode()).decode(),
        KATO_PASSWORD,
        quote(KATO_PASSWORD, safe=""),
        quote(KATO_PASSWORD, safe="").lower(),
        BASIC,
        KATO_USERINFO,
        "redis-pw-77a1",
    ],
)
def test_known_secrets_are_masked_by_value_anywhere(secret: str) -> None:
    scrubber = kato_scrubber()
    # Shapes the structural rules know nothing of: only the value gives them away.
    for text in (f"weird {secret} text", f"x={secret}", f"<{secret}>"):
        assert secret not in scrubber.text(text)
    nested = {"outer": [("a", {"deep": f"in {secret} here"})], "raw": secret.encode()}
    assert secret not in repr(scrubber.value(nested))


def test_short_secrets_are_not_searched_for_by_value() -> None:
    scrubber = Scrubber.from_secrets(tokens=(), urls=("http://u:pw@kato:8000",))
    assert scrubber.text("the password field") == "the password field"
    assert scrubber.text("http://u:pw@kato:8000/x") == f"http://{MASK}@kato:8000/x"


# The gateway process, at debug level


@pytest.fixture(params=["sse-monitor serve", "uvicorn --http h11", "uvicorn --http httptools"])
def debug_gateway(kato: Kato, request: pytest.FixtureRequest) -> Iterator[GatewayProcess]:
    """Our CLI (uvicorn picks httptools), and uvicorn's, as the Procfile runs it, with each of
    its HTTP implementations (their error paths differ)."""
    kato_url = f"http://{KATO_USERINFO}@{kato.url.removeprefix('http://')}"
    env = {
        "SSE_MONITOR_LOG_LEVEL": "debug",
        "SSE_MONITOR_TOKEN": VIEWER,
        "SSE_MONITOR_ADMIN_TOKEN": ADMIN,
        "SSE_MONITOR_AUTH_FAILURE_LIMIT": "1000",
    }
    if request.param.startswith("uvicorn"):
        process: GatewayProcess = UvicornGateway(kato_url, request.param.split()[-1], env)
    else:
        process = GatewayProcess(kato_url, env=env)
    with process as gateway:
        yield gateway


def wait_for_text(gateway: GatewayProcess, text: str, timeout: float = 15) -> None:
    wait_until(lambda: text in gateway.log(), timeout, what=f"{text!r} to be logged")


def send_every_way(gateway: GatewayProcess, token: str) -> list[str]:
    """Requests carrying `token` every way a client may: what each answered, as text."""
    answers: list[httpx.Response] = []
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        answers.append(http.get("/api/snapshot", headers={"Authorization": f"Bearer {token}"}))
        for key in ("token", "%74oken", "%54OKEN", "t%6Fken", "+token", "access_token"):
            answers.append(http.get(f"/api/snapshot?{key}={token}"))
            answers.append(http.get(f"/api/nope?a=1;{key}={token}"))
        encoded = "".join(f"%{ord(c):02x}" for c in token)
        answers.append(http.get(f"/api/snapshot?token={encoded}"))
        answers.append(http.post("/login", json={"token": token}))
        answers.append(http.post("/login", data={"token": token}))
        login = http.post("/login", json={"token": token})
        assert login.status_code == 200
        answers.append(http.get("/api/snapshot"))  # with the login cookie, from the client's jar
        answers.append(
            http.get("/api/snapshot", headers={"Cookie": f"sse_monitor_session={token}"})
        )
    assert answers[3].status_code == 200, "?%74oken= is accepted: the log must still mask it"
    assert answers[-2].status_code == 200, "the login cookie is accepted"
    return [answer.text for answer in answers] + [login.cookies["sse_monitor_session"]]


def malformed_request(gateway: GatewayProcess, token: str) -> bytes:
    """A request uvicorn cannot parse, with the token in a header line: its error path."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(
            b"GET /api/snapshot HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization Bearer {token}\r\n".encode()
            + f"Cookie: sse_monitor_session={token}\r\n\r\n".encode()
        )
        return sock.recv(4096)


def test_no_secret_reaches_the_log_at_debug_level(debug_gateway: GatewayProcess) -> None:
    gateway = debug_gateway
    # The push channel's handshake (websockets logs its headers at debug level) has happened.
    wait_for_text(gateway, "> GET /ws/events HTTP/1.1")
    wait_for_text(gateway, "> Authorization: ")
    session_cookies = []
    for token in (VIEWER, ADMIN):
        answers = send_every_way(gateway, token)
        session_cookies.append(answers[-1])
        assert all(token not in answer for answer in answers[:-1])
        assert malformed_request(gateway, token).startswith(b"HTTP/1.1 400")
    # uvicorn logs a request (or its parse error) before it answers: all is in the file now.
    log = gateway.log()
    assert '"level": "debug"' in log  # the debug level was really on
    secrets = [
        VIEWER,
        ADMIN,
        KATO_PASSWORD,
        quote(KATO_PASSWORD, safe=""),
        BASIC,
        *session_cookies,
    ]
    for secret in secrets:
        assert secret not in log, f"{secret!r} is in the log"
    assert f"> Authorization: {MASK}" in log
    assert f'"GET /api/snapshot?%74oken={MASK} HTTP/1.1\\" 200' in log
    assert "Invalid HTTP request received." in log
