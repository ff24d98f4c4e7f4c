"""Property-based fuzz of every route against one real gateway process (tests/support/hostile.py).

For every generated request: no 5xx, every 4xx in the JSON error shape, no token in the answer;
and the gateway's log gains no error line, no traceback and no token (checked after each
example, and once more over the whole log at the end). The number of examples comes from the
hypothesis profile (tests/conftest.py: `ci` by default, HYPOTHESIS_PROFILE=long for more).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote_from_bytes

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.hostile import (
    ADMIN_TOKEN,
    SECRETS,
    VIEWER_TOKEN,
    RawResponse,
    Target,
    build_request,
    exchange,
    hostile_target,
    log_problems,
)
from tests.support.hostile_strategies import (
    header_sets,
    json_bodies,
    json_fields,
    odd_dates,
    query_strings,
    session_cookies,
    url_encoded,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(600)]

# Every route, with the query parameters it reads (sse_monitor/app.py, api.py, alerts/api.py,
# access.py, prometheus.py, stream.py).
GET_ROUTES: dict[str, tuple[str, ...]] = {
    "/": (),
    "/api": (),
    "/events": ("topics", "last_event_id"),
    "/api/sessions/count": (),
    "/api/sessions": ("offset", "limit"),
    "/api/snapshot": (),
    "/api/events": ("after", "limit"),
    "/api/containers": (),
    "/api/streams": ("limit",),
    "/api/alerts": ("state", "severity", "limit", "before"),
    "/api/notifications": ("limit",),
    "/api/access": (),
    "/metrics": (),
    "/healthz": (),
    "/readyz": (),
    "/static/style.css": (),
}
POST_ROUTES = ("/login", "/logout", "/api/alerts/{id}/ack")
CREDENTIALS: dict[str, list[tuple[bytes, bytes]]] = {
    "none": [],
    "viewer": [(b"Authorization", b"Bearer " + VIEWER_TOKEN.encode())],
    "admin": [(b"Authorization", b"Bearer " + ADMIN_TOKEN.encode())],
    "wrong": [(b"Authorization", b"Bearer not-a-token")],
}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with hostile_target(tmp_path_factory.mktemp("fuzz")) as target:
        yield target


def check(target: Target, request: bytes, *, head: bool = False) -> RawResponse | None:
    """Send one generated request and assert everything that must hold afterwards."""
    response = exchange(target.port, request, head=head)
    found = target.problems(request, response, head=head)
    # One assert per kind, so that hypothesis reports each kind of failure on its own.
    assert not found["5xx"], f"{request[:600]!r}: a server error: {found['5xx']}"
    assert not found["error"], f"{request[:600]!r}: an error logged: {found['error']}"
    assert not found["secret"], f"{request[:600]!r}: a token leaked: {found['secret']}"
    assert not found["shape"], f"{request[:600]!r}: not the JSON error shape: {found['shape']}"
    return response


@given(
    route=st.sampled_from(sorted(GET_ROUTES)),
    data=st.data(),
    credentials=st.sampled_from(sorted(CREDENTIALS)),
    method=st.sampled_from((b"GET", b"GET", b"GET", b"HEAD")),
)
def test_query_parameters(
    target: Target, route: str, data: st.DataObject, credentials: str, method: bytes
) -> None:
    query = data.draw(query_strings(GET_ROUTES[route]), label="query")
    request = build_request(method, route.encode() + b"?" + query, CREDENTIALS[credentials])
    check(target, request, head=method == b"HEAD")


@given(
    before=st.one_of(
        odd_dates(), odd_dates(), odd_dates(), st.from_regex(r"[0-9a-f]{16}", fullmatch=True)
    ).flatmap(url_encoded),
    credentials=st.sampled_from(("viewer", "admin")),
)
def test_alert_cursor_dates(target: Target, before: bytes, credentials: str) -> None:
    """`before` is parsed as a date at the calendar's edges: its own test, so that the small
    CI run covers them all."""
    request = build_request(b"GET", b"/api/alerts?before=" + before, CREDENTIALS[credentials])
    check(target, request)


@given(route=st.sampled_from(sorted(GET_ROUTES)), headers=header_sets())
def test_headers_we_read(target: Target, route: str, headers: list[tuple[bytes, bytes]]) -> None:
    check(target, build_request(b"GET", route.encode(), headers))


@given(
    route=st.sampled_from(("/api/access", "/api/snapshot", "/api/streams", "/events")),
    cookie=session_cookies(),
)
def test_forged_session_cookies(target: Target, route: str, cookie: bytes) -> None:
    response = check(target, build_request(b"GET", route.encode(), [(b"Cookie", cookie)]))
    assert response is not None
    if route == "/api/access" and response.status == 200:
        assert json.loads(response.body)["role"] is None, "a forged cookie grants nothing"
    else:
        assert response.status != 200, "a forged cookie must never be let in"


@given(
    route=st.sampled_from(sorted(GET_ROUTES)),
    shape=st.sampled_from(("{}/", "/{}", "{}//", "{}/.", "{}%2f", "{}/%2e", "{}?")),
    host=st.sampled_from((b"127.0.0.1", b"evil.example", b"evil.example:443", b"a@evil.example")),
    credential=st.sampled_from((b"token=" + VIEWER_TOKEN.encode(), b"%74oken=wrong", b"")),
)
def test_paths_hosts_and_redirects(
    target: Target, route: str, shape: str, host: bytes, credential: bytes
) -> None:
    """Near-miss paths (a trailing slash earns a redirect) with a forged Host: a redirect
    never carries the token, nor sends the client to a host it named itself."""
    path = shape.format(route.rstrip("/")).encode()
    separator = b"&" if b"?" in path else b"?"
    request = build_request(b"GET", path + separator + credential, host=host)
    response = check(target, request)
    assert response is not None
    location = response.header("location")
    if location is not None:
        assert b"evil.example" not in location, f"{request!r} redirects to {location!r}"


LOGIN_VALID = (
    b'{"token": "' + VIEWER_TOKEN.encode() + b'"}',
    b'{"token": "' + ADMIN_TOKEN.encode() + b'"}',
    b'{"token": "wrong"}',
    b"token=" + VIEWER_TOKEN.encode(),
)


@given(
    body=json_bodies(("token",), LOGIN_VALID),
    headers=st.lists(
        st.sampled_from(
            (
                (b"Content-Type", b"application/json"),
                (b"Content-Type", b"application/x-www-form-urlencoded"),
                (b"Content-Type", b"text/plain"),
                (b"Content-Type", b"application/json; charset=utf-16"),
                (b"X-Forwarded-Proto", b"https"),
                (b"X-Forwarded-For", b"203.0.113.9"),
            )
        ),
        max_size=3,
    ),
    path=st.sampled_from(("/login", "/logout")),
)
def test_login_and_logout_bodies(
    target: Target, body: bytes, headers: list[tuple[bytes, bytes]], path: str
) -> None:
    check_body(target, build_request(b"POST", path.encode(), headers, body), body, cap=4096)


@given(body=json_fields(("token",)), form=st.booleans())
def test_login_token_values(target: Target, body: bytes, form: bool) -> None:
    """A well-formed login whose token is hostile (its own test: a malformed body failing
    first must not hide it)."""
    content_type = b"application/json"
    if form:  # the same value, as a form field
        content_type = b"application/x-www-form-urlencoded"
        body = b"token=" + quote_from_bytes(body[10:-1]).encode()
    request = build_request(b"POST", b"/login", [(b"Content-Type", content_type)], body)
    check_body(target, request, body, cap=4096)


ACK_VALID = (b'{"by": "alice", "note": "on it"}', b'{"by": "bob"}', b'{"by": " ", "note": null}')


@given(
    body=json_bodies(("by", "note"), ACK_VALID),
    content_type=st.sampled_from(
        (b"application/json", b"text/plain", b"", b"application/x-www-form-urlencoded")
    ),
    alert=st.sampled_from(("known", "known", "known", "unknown", "upper", "long", "dots")),
    credentials=st.sampled_from(("admin", "admin", "admin", "viewer", "none")),
)
def test_ack_bodies(
    target: Target, body: bytes, content_type: bytes, alert: str, credentials: str
) -> None:
    alert_id = {
        "known": target.alert_id,
        "unknown": "0123456789abcdef",
        "upper": target.alert_id.upper(),
        "long": target.alert_id * 20,
        "dots": "%2e%2e",
    }[alert]
    headers = [*CREDENTIALS[credentials], (b"Content-Type", content_type)]
    path = f"/api/alerts/{alert_id}/ack".encode()
    check_body(target, build_request(b"POST", path, headers, body), body, cap=16 * 1024)


@given(body=json_fields(("by", "note")), alert=st.sampled_from(("known", "unknown")))
def test_ack_field_values(target: Target, body: bytes, alert: str) -> None:
    """A well-formed ack, as the admin, whose by and note are hostile."""
    alert_id = target.alert_id if alert == "known" else "0123456789abcdef"
    headers = [*CREDENTIALS["admin"], (b"Content-Type", b"application/json")]
    request = build_request(b"POST", f"/api/alerts/{alert_id}/ack".encode(), headers, body)
    check_body(target, request, body, cap=16 * 1024)


def check_body(target: Target, request: bytes, body: bytes, *, cap: int) -> None:
    """A body over the cap may be answered (and the connection closed) before it is all sent,
    and the close can overtake the answer: only then is no answer acceptable."""
    response = check(target, request)
    if len(body) <= cap:
        assert response is not None, f"no answer to {request[:300]!r}"


def test_the_fuzzed_gateway_still_answers(target: Target) -> None:
    """Run last in this module: after every hostile request, a plain one still works."""
    answer = httpx.get(
        f"{target.gateway.url}/api/snapshot",
        headers={"Authorization": f"Bearer {VIEWER_TOKEN}"},
        timeout=10,
    )
    assert answer.status_code == 200 and "kato" in answer.json()
    assert target.gateway.proc is not None and target.gateway.proc.poll() is None
    whole_log = target.gateway.log_path.read_bytes()
    assert log_problems(whole_log, SECRETS) == [], "the whole log, read again at the end"


def test_tokens_are_recognised_by_the_log_check(tmp_path: Path) -> None:
    """The log check itself can fail: a line with a token or at error level is caught."""
    lines = (
        b'{"event": "x", "level": "info", "q": "?%74oken=' + VIEWER_TOKEN.encode() + b'"}\n'
        b'{"event": "request.failed", "level": "error"}\n'
        b'{"event": "fine", "level": "info"}\n'
    )
    assert len(log_problems(lines, SECRETS)) == 2
