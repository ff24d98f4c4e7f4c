"""Hostile input against the gateway process: query values that overflow, request bodies that
are not what they claim (lone surrogates, deep nesting, huge numbers, endless or cut short).

Every answer must be a 4xx JSON error naming what was wrong, never a 500; and nothing a client
does may put an error-level line or a traceback in the log.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sse_monitor.web.bodies import json_object
from sse_monitor.web.errors import BadRequest
from tests.support.gateway import GatewayProcess
from tests.support.http import tls

VIEWER = "viewer-token-3f9a0c1d2e4b5a69"
ADMIN = "admin-token-7c2e91b0d4a85f13"
ACK = "/api/alerts/0123456789abcdef/ack"  # well formed, unknown: a body that passes gets a 404
GUARDED = {
    "SSE_MONITOR_TOKEN": VIEWER,
    "SSE_MONITOR_ADMIN_TOKEN": ADMIN,
    "SSE_MONITOR_AUTH_FAILURE_LIMIT": "1000",  # wrong tokens on purpose: no lockout here
    "SSE_MONITOR_LOG_LEVEL": "debug",
}
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture(scope="module")
def open_gateway(module_kato: str) -> Iterator[GatewayProcess]:
    with GatewayProcess(module_kato) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def guarded(module_kato: str) -> Iterator[GatewayProcess]:
    with GatewayProcess(module_kato, env=GUARDED) as gateway:
        yield gateway


@pytest.fixture(params=["open", "guarded"])
def either(request: pytest.FixtureRequest) -> GatewayProcess:
    """Both configurations: with no token set, /login still reads and checks its body."""
    return request.getfixturevalue({"open": "open_gateway", "guarded": "guarded"}[request.param])


def assert_json_error(response: httpx.Response, status: int, parameter: str | None = None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and isinstance(body["error"], str) and body["error"]
    assert set(body) <= {"error", "status", "parameter"}
    assert body.get("parameter") == parameter
    return body["error"]


def error_lines(gateway: GatewayProcess) -> list[str]:
    return [
        line
        for line in gateway.log().splitlines()
        if "Traceback" in line
        or (line.startswith("{") and json.loads(line).get("level") in ("error", "critical"))
    ]


# Query parameters


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/api/alerts", {"before": "0001-01-01T00:00:00+14:00"}, "before"),
        ("/api/alerts", {"before": "9999-12-31T23:59:59-14:00"}, "before"),
        ("/api/alerts", {"limit": "1e400"}, "limit"),
        ("/api/alerts", {"limit": "nan"}, "limit"),
        ("/api/alerts", {"limit": "inf"}, "limit"),
        ("/api/alerts", {"limit": "9" * 5000}, "limit"),
        ("/api/alerts", {"limit": "\u0663"}, "limit"),  # ARABIC-INDIC DIGIT THREE: int() takes it
        ("/api/alerts", {"limit": " 5"}, "limit"),
        ("/api/events", {"limit": "1" + "0" * 30}, "limit"),
        ("/api/events", {"limit": "-" + "9" * 30}, "limit"),
        ("/api/sessions", {"offset": "1e3"}, "offset"),
        ("/api/streams", {"limit": "1_0"}, "limit"),
    ],
)
def test_query_values_that_overflow_are_a_400(
    open_gateway: GatewayProcess, path: str, params: dict[str, str], parameter: str
) -> None:
    assert_json_error(
        httpx.get(open_gateway.url + path, params=params, verify=tls()), 400, parameter
    )


def test_in_range_query_values_still_work(open_gateway: GatewayProcess) -> None:
    times = ["0001-01-01T00:00:00-14:00", "9999-12-31T23:59:59+14:00", "2026-01-01T00:00:00"]
    for moment in times:
        answer = httpx.get(
            f"{open_gateway.url}/api/alerts", params={"before": moment, "limit": "1"}, verify=tls()
        )
        assert answer.status_code == 200, answer.text
    events = httpx.get(f"{open_gateway.url}/api/events", params={"limit": "007"}, verify=tls())
    assert events.status_code == 200


# Lone surrogates and bytes that are not UTF-8, in every string we take


SURROGATES = [b'"\\ud800"', b'"\xed\xa0\x80"', b'"ok\\udfff"', b'"\xff"']


@pytest.mark.parametrize("string", SURROGATES)
def test_a_login_token_that_is_not_text_is_a_400(either: GatewayProcess, string: bytes) -> None:
    answer = httpx.post(f"{either.url}/login", content=b'{"token": ' + string + b"}", verify=tls())
    assert_json_error(answer, 400, "token")


def test_a_form_login_token_that_is_not_text_is_a_400(either: GatewayProcess) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = httpx.post(
        f"{either.url}/login", content=b"token=%ED%A0%80", headers=form, verify=tls()
    )
    assert_json_error(answer, 400, "token")


@pytest.mark.parametrize("field", ["by", "note"])
@pytest.mark.parametrize("string", SURROGATES)
def test_an_ack_field_that_is_not_text_is_a_400(
    guarded: GatewayProcess, field: str, string: bytes
) -> None:
    fields = {"by": b'"alice"', field: string}
    body = b"{" + b", ".join(b'"%s": %s' % (k.encode(), v) for k, v in fields.items()) + b"}"
    answer = httpx.post(guarded.url + ACK, content=body, headers=AS_ADMIN, verify=tls())
    assert_json_error(answer, 400, field)


def test_a_field_name_that_is_not_text_is_a_400(guarded: GatewayProcess) -> None:
    answer = httpx.post(
        guarded.url + ACK, content=b'{"by": "a", "\\udc00": 1}', headers=AS_ADMIN, verify=tls()
    )
    assert_json_error(answer, 400)
    answer = httpx.post(
        f"{guarded.url}/login", content=b'{"token": "x", "t": ["\\ud800"]}', verify=tls()
    )
    assert_json_error(answer, 400, "t")


def test_text_with_astral_characters_is_fine(guarded: GatewayProcess) -> None:
    body = '{"by": "\\ud83d\\ude00 ops", "note": "on it \U0001f680"}'.encode()
    answer = httpx.post(guarded.url + ACK, content=body, headers=AS_ADMIN, verify=tls())
    assert answer.status_code == 404


# Bodies of the wrong shape


DEEP = b"[" * 2000 + b"]" * 2000  # within both caps, past json's recursion limit


@pytest.mark.parametrize(
    ("body", "headers", "parameter"),
    [
        (b"", {}, None),
        (b"   ", {}, None),
        (b'["by", "alice"]', {}, None),
        (b'"alice"', {}, None),
        (b"null", {}, None),
        (DEEP, {}, None),
        (b'{"by": ' + DEEP + b"}", {}, None),  # too deep to name a field
        (b'{"by": 1e400}', {}, "by"),
        (b'{"by": ' + b"9" * 5000 + b"}", {}, "by"),
        (b'{"by": "a", "note": -1e99999}', {}, "note"),
        (b'{"by": NaN}', {}, None),
        (b'{"by": Infinity}', {}, None),
        ('{"by": "alice"}'.encode("utf-16"), {}, None),
        (b"by=alice", {"Content-Type": "application/x-www-form-urlencoded"}, None),
        (b"--x\r\n\r\n--x--", {"Content-Type": "multipart/form-data; boundary=x"}, None),
    ],
)
def test_a_malformed_ack_body_is_a_400(
    guarded: GatewayProcess, body: bytes, headers: dict[str, str], parameter: str | None
) -> None:
    answer = httpx.post(
        guarded.url + ACK, content=body, headers={**AS_ADMIN, **headers}, verify=tls()
    )
    assert_json_error(answer, 400, parameter)


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        (b"", None),
        (b"[]", None),
        (DEEP, None),
        (b'{"token": ' + DEEP + b"}", None),
        (b'{"token": 1e400}', "token"),
        (b'{"token": ' + b"9" * 3000 + b"}", "token"),
        (b'{"token": NaN}', None),
        ('{"token": "x"}'.encode("utf-32"), None),
    ],
)
def test_a_malformed_login_body_is_a_400(
    either: GatewayProcess, body: bytes, parameter: str | None
) -> None:
    assert_json_error(httpx.post(f"{either.url}/login", content=body, verify=tls()), 400, parameter)


def test_a_byte_order_mark_or_another_content_type_is_still_json(guarded: GatewayProcess) -> None:
    bom = b"\xef\xbb\xbf"
    for content_type in ("application/json", "text/plain", "application/json; charset=latin-1"):
        headers = {**AS_ADMIN, "Content-Type": content_type}
        ack = httpx.post(
            guarded.url + ACK, content=bom + b'{"by": "alice"}', headers=headers, verify=tls()
        )
        assert ack.status_code == 404, ack.text  # the body was good; the alert is unknown
        body = bom + json.dumps({"token": ADMIN}).encode()
        login = httpx.post(
            f"{guarded.url}/login",
            content=body,
            headers={"Content-Type": content_type},
            verify=tls(),
        )
        assert login.status_code == 200 and login.json() == {"role": "admin"}


# Bodies that never end, and clients that leave mid-body


def send_head(port: int, path: str, headers: dict[str, str]) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict]:
    """The status and JSON body of one response (sock's timeout bounds the wait)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-response"
        body += chunk
    return status, json.loads(body)


CAPPED = [("/login", {}, 4096), (ACK, AS_ADMIN, 16384)]


@pytest.mark.parametrize(("path", "auth", "cap"), CAPPED)
def test_a_streamed_body_past_the_cap_is_refused_before_it_ends(
    guarded: GatewayProcess, path: str, auth: dict[str, str], cap: int
) -> None:
    headers = {**auth, "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    with send_head(guarded.port, path, headers) as sock:
        piece = b"x" * 1024
        sock.sendall(b'%x\r\n{"by": "%s\r\n' % (len(piece) + 8, piece))
        for _ in range(20):  # 20 KB of a body meant to be 5 MB: the 400 comes now, not after
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        status, body = read_response(sock)
    assert status == 400 and body == {
        "error": f"the body must be at most {cap} bytes",
        "status": 400,
    }


@pytest.mark.parametrize(("path", "auth", "cap"), CAPPED)
def test_a_declared_length_past_the_cap_is_refused_at_once(
    guarded: GatewayProcess, path: str, auth: dict[str, str], cap: int
) -> None:
    headers = {**auth, "Content-Type": "application/json", "Content-Length": str(5 * 2**20)}
    with send_head(guarded.port, path, headers) as sock:  # not one byte of the body is sent
        status, body = read_response(sock)
    assert status == 400 and body == {
        "error": f"the body must be at most {cap} bytes",
        "status": 400,
    }


def test_a_client_leaving_mid_body_is_not_an_error(module_kato: str) -> None:
    with GatewayProcess(module_kato, env=GUARDED) as gateway:
        for path, auth in [("/login", {}), (ACK, AS_ADMIN)]:
            headers = {**auth, "Content-Type": "application/json", "Content-Length": "1000"}
            with send_head(gateway.port, path, headers) as sock:
                sock.sendall(b'{"token": ')  # 10 of the 1000 bytes promised, then gone
        # Wait for both requests to end, either way: quietly (the fix) or with a 500 (the bug).
        deadline = time.monotonic() + 10
        while len(gateway.logged_events("request.client_gone", "request.failed")) < 2:
            assert time.monotonic() < deadline, gateway.log()
            time.sleep(0.05)
        assert gateway.logged_events("request.client_gone") == ["request.client_gone"] * 2
        assert error_lines(gateway) == []


def test_no_request_in_this_module_left_an_error_in_the_log(
    open_gateway: GatewayProcess, guarded: GatewayProcess
) -> None:
    """Run last in this module: the gateways above took every hostile request without a trace."""
    httpx.post(guarded.url + ACK, content=b'{"by": "\\ud800"}', headers=AS_ADMIN, verify=tls())
    assert error_lines(open_gateway) == []
    assert error_lines(guarded) == []


# The parser alone, against anything


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.binary(max_size=64), st.text(max_size=64).map(str.encode)))
def test_json_object_answers_any_bytes_with_an_object_or_a_400(body: bytes) -> None:
    try:
        data = json_object(body, example="{}")
    except BadRequest:
        return
    assert isinstance(data, dict)
    json.dumps(data, default=str).encode("utf-8")  # every string in it can be encoded


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=4), inner, max_size=3)
            ),
            max_leaves=10,
        ),
        max_size=4,
    )
)
def test_json_object_takes_every_object_of_valid_text(value: dict) -> None:
    body = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:  # hypothesis' text can hold lone surrogates: those are refused
        with pytest.raises(BadRequest):
            json_object(body, example="{}")
        return
    assert json.dumps(json_object(body, example="{}"), default=int) == json.dumps(value)
