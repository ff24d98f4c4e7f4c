"""Access control against the gateway process: the matrix of roles, channels and endpoints."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import GatewayProcess, serve_until_exit
from tests.support.hostile import RawResponse, build_request, exchange
from tests.support.http import tls
from tests.support.kato import Kato

VIEWER = "viewer-token-3f9a0c1d2e4b5a69"
ADMIN = "admin-token-7c2e91b0d4a85f13"
UNKNOWN_ALERT = "0123456789abcdef"  # a well-formed id that does not exist: 404 once past access
ENDPOINTS = {
    # name: (method, path, the status an allowed request gets)
    "stream": ("GET", "/events", 200),
    "read": ("GET", "/api/snapshot", 200),
    "history": ("GET", "/api/history", 200),
    "ack": ("POST", f"/api/alerts/{UNKNOWN_ALERT}/ack", 404),
    "notifications": ("GET", "/api/notifications", 200),
}
# role -> endpoint -> expected status
MATRIX = {
    None: {"stream": 401, "read": 401, "history": 401, "ack": 401, "notifications": 401},
    "viewer": {"stream": 200, "read": 200, "history": 200, "ack": 403, "notifications": 403},
    "admin": {"stream": 200, "read": 200, "history": 200, "ack": 404, "notifications": 200},
}
TOKENS = {"viewer": VIEWER, "admin": ADMIN}


@pytest.fixture(scope="module")
def guarded(module_kato: str) -> Iterator[GatewayProcess]:
    env = {
        "SSE_MONITOR_TOKEN": VIEWER,
        "SSE_MONITOR_ADMIN_TOKEN": ADMIN,
        # This module presents wrong tokens on purpose, all from 127.0.0.1: it must not lock
        # itself out (the lockout has its own tests, test_lockout.py).
        "SSE_MONITOR_AUTH_FAILURE_LIMIT": "1000",
    }
    with GatewayProcess(module_kato, env=env) as gateway:
        yield gateway


def call(
    gateway: GatewayProcess,
    endpoint: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    cookies: httpx.Cookies | None = None,
) -> httpx.Response:
    method, path, _ = ENDPOINTS[endpoint]
    with httpx.Client(base_url=gateway.url, cookies=cookies, timeout=10, verify=tls()) as client:
        request = client.build_request(
            method, path, headers=headers, params=params, json={"by": "tester"}
        )
        response = client.send(request, stream=True)
        if "text/event-stream" not in response.headers.get("content-type", ""):
            response.read()
        response.close()  # a stream that was let in: its status is all this needs
        return response


def login(gateway: GatewayProcess, token: str) -> httpx.Response:
    return httpx.post(f"{gateway.url}/login", json={"token": token}, verify=tls())


@pytest.mark.parametrize("channel", ["bearer", "cookie", "query"])
@pytest.mark.parametrize("role", [None, "viewer", "admin"])
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_the_access_matrix(
    guarded: GatewayProcess, channel: str, role: str | None, endpoint: str
) -> None:
    headers, params, cookies = {}, {}, httpx.Cookies()
    if role is not None:
        token = TOKENS[role]
        if channel == "bearer":
            headers["Authorization"] = f"Bearer {token}"
        elif channel == "query":
            params["token"] = token
        else:
            answer = login(guarded, token)
            assert answer.status_code == 200 and answer.json() == {"role": role}
            cookies = answer.cookies
    response = call(guarded, endpoint, headers=headers, params=params, cookies=cookies)
    expected = MATRIX[role][endpoint]
    assert response.status_code == expected
    if expected == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    if expected in (401, 403):
        assert response.json()["status"] == expected
        assert "error" in response.json()


@pytest.mark.parametrize(
    ("how", "value"),
    [("bearer", "not-the-token-0000000000"), ("query", VIEWER + "x"), ("bearer", ADMIN[:-1])],
)
def test_a_wrong_token_is_a_401(guarded: GatewayProcess, how: str, value: str) -> None:
    headers = {"Authorization": f"Bearer {value}"} if how == "bearer" else {}
    params = {"token": value} if how == "query" else {}
    response = call(guarded, "read", headers=headers, params=params)
    assert response.status_code == 401


def test_the_login_cookie(guarded: GatewayProcess) -> None:
    assert login(guarded, "wrong-token-wrong-token").status_code == 401
    assert httpx.post(f"{guarded.url}/login", json={}, verify=tls()).status_code == 400
    assert httpx.post(f"{guarded.url}/login", content=b"{oops", verify=tls()).status_code == 400
    answer = login(guarded, ADMIN)
    header = answer.headers["set-cookie"]
    name, _, rest = header.partition("=")
    value = rest.split(";")[0]
    attributes = [part.strip().lower() for part in header.split(";")[1:]]
    assert name == "sse_monitor_session"
    assert "httponly" in attributes and "samesite=strict" in attributes
    assert "max-age=43200" in attributes
    assert not any(a.startswith("path=") for a in attributes)  # scoped to the login's folder
    assert "secure" not in attributes  # plain http, and no trusted proxy says otherwise
    assert ADMIN not in header and VIEWER not in header
    role, expires, nonce, signature = value.split(".")
    assert role == "admin" and expires.isdigit() and re.fullmatch(r"[0-9a-f]{64}", signature)
    assert re.fullmatch(r"[0-9a-f]{16}", nonce)
    # Forged: the expiry or the nonce changed, or the signature altered: ignored, so no access.
    for forged in (
        f"admin.{int(expires) + 999}.{nonce}.{signature}",
        f"admin.{expires}.{'0' * 16}.{signature}",
        f"admin.{expires}.{nonce}.{'0' * 64}",
        f"admin.{expires}.{signature}",  # the shape before nonces
    ):
        cookies = httpx.Cookies({"sse_monitor_session": forged})
        assert call(guarded, "read", cookies=cookies).status_code == 401
    cookies = httpx.Cookies({"sse_monitor_session": value})
    access = httpx.get(f"{guarded.url}/api/access", cookies=cookies, verify=tls()).json()
    assert access == {"enabled": True, "role": "admin", "session": True}
    anonymous = httpx.get(f"{guarded.url}/api/access", verify=tls()).json()
    assert anonymous == {"enabled": True, "role": None, "session": False}
    logout = httpx.post(f"{guarded.url}/logout", cookies=cookies, verify=tls())
    assert "max-age=0" in logout.headers["set-cookie"].lower()
    form = httpx.post(f"{guarded.url}/login", data={"token": VIEWER}, verify=tls())
    assert form.json() == {"role": "viewer"}


def test_open_paths_stay_open(guarded: GatewayProcess) -> None:
    for path in ("/", "/static/js/main.js", "/healthz", "/readyz", "/api", "/api/access"):
        assert httpx.get(f"{guarded.url}{path}", verify=tls()).status_code == 200, path


def test_tokens_never_reach_a_log_line_or_a_response(guarded: GatewayProcess) -> None:
    """Runs after the matrix in this module's gateway: every channel has been used by now."""
    bodies = []
    for params in ({"token": VIEWER}, {"token": ADMIN}, {"token": VIEWER + "zz"}):
        bodies.append(httpx.get(f"{guarded.url}/api/snapshot", params=params, verify=tls()).text)
        bodies.append(httpx.get(f"{guarded.url}/api/nope", params=params, verify=tls()).text)
    bodies.append(login(guarded, VIEWER).text + login(guarded, "wrong" * 5).text)
    log = guarded.log()
    assert "token=***" in log  # the access log saw them, scrubbed
    for token in (VIEWER, ADMIN):
        assert token not in log
        assert all(token not in body for body in bodies)


def test_with_only_the_viewer_token_it_does_everything(kato: Kato) -> None:
    with GatewayProcess(kato.url, env={"SSE_MONITOR_TOKEN": VIEWER}) as gateway:
        assert call(gateway, "read").status_code == 401
        bearer = {"Authorization": f"Bearer {VIEWER}"}
        assert call(gateway, "ack", headers=bearer).status_code == 404
        assert login(gateway, VIEWER).json() == {"role": "admin"}


def test_with_only_the_admin_token_reading_is_open(kato: Kato) -> None:
    with GatewayProcess(kato.url, env={"SSE_MONITOR_ADMIN_TOKEN": ADMIN}) as gateway:
        assert call(gateway, "stream").status_code == 200
        assert call(gateway, "ack").status_code == 403
        assert call(gateway, "ack", params={"token": ADMIN}).status_code == 404


def test_secure_cookies_behind_a_trusted_https_proxy(kato: Kato) -> None:
    env = {"SSE_MONITOR_TOKEN": VIEWER, "SSE_MONITOR_TRUSTED_PROXIES": "127.0.0.1"}
    with GatewayProcess(kato.url, env=env) as gateway:
        https = {"X-Forwarded-Proto": "https"}
        answer = httpx.post(
            f"{gateway.url}/login", json={"token": VIEWER}, headers=https, verify=tls()
        )
        assert "secure" in [p.strip().lower() for p in answer.headers["set-cookie"].split(";")]
    with GatewayProcess(kato.url, env={"SSE_MONITOR_TOKEN": VIEWER}) as gateway:
        answer = httpx.post(
            f"{gateway.url}/login", json={"token": VIEWER}, headers=https, verify=tls()
        )
        assert "secure" not in answer.headers["set-cookie"].lower()  # nobody to believe


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SSE_MONITOR_TOKEN": "short-token"}, "SSE_MONITOR_TOKEN must be at least 16"),
        ({"SSE_MONITOR_ADMIN_TOKEN": "has spaces in the token"}, "SSE_MONITOR_ADMIN_TOKEN must"),
        ({"SSE_MONITOR_TOKEN": VIEWER, "SSE_MONITOR_ADMIN_TOKEN": VIEWER}, "must differ"),
        ({"SSE_MONITOR_CORS_ORIGINS": "*"}, "SSE_MONITOR_CORS_ORIGINS"),
        ({"SSE_MONITOR_CORS_ORIGINS": "https://ops.example.com/path"}, "is not an origin"),
        ({"SSE_MONITOR_TRUSTED_PROXIES": "nginx"}, "'nginx' is not an IP address"),
        ({"SSE_MONITOR_MAX_STREAMS": "0"}, "SSE_MONITOR_MAX_STREAMS=0 is out of range"),
        ({"SSE_MONITOR_AUTH_FAILURE_LIMIT": "0"}, "SSE_MONITOR_AUTH_FAILURE_LIMIT=0 is out"),
        ({"SSE_MONITOR_AUTH_FAILURE_WINDOW": "soon"}, "SSE_MONITOR_AUTH_FAILURE_WINDOW='soon'"),
    ],
)
def test_bad_access_settings_stop_start_up(env: dict[str, str], message: str) -> None:
    result = serve_until_exit(env)
    assert result.returncode == 2
    assert message in result.stderr
    for secret in ("short-token", "has spaces in the token", VIEWER):
        assert secret not in result.stderr + result.stdout


def test_cors_allows_only_the_listed_origins(kato: Kato) -> None:
    env = {"SSE_MONITOR_CORS_ORIGINS": "https://ops.example.com"}
    with GatewayProcess(kato.url, env=env) as gateway:
        preflight = httpx.options(
            f"{gateway.url}/api/alerts/{UNKNOWN_ALERT}/ack",
            headers={
                "Origin": "https://ops.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
            verify=tls(),
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://ops.example.com"
        assert preflight.headers["access-control-allow-credentials"] == "true"
        allowed = httpx.get(
            f"{gateway.url}/api/snapshot",
            headers={"Origin": "https://ops.example.com"},
            verify=tls(),
        )
        assert allowed.headers["access-control-allow-origin"] == "https://ops.example.com"
        other = httpx.get(
            f"{gateway.url}/api/snapshot", headers={"Origin": "https://evil.test"}, verify=tls()
        )
        assert "access-control-allow-origin" not in other.headers
        refused = httpx.options(
            f"{gateway.url}/api/snapshot",
            headers={"Origin": "https://evil.test", "Access-Control-Request-Method": "GET"},
            verify=tls(),
        )
        assert refused.status_code == 400


def test_an_oversized_login_body_is_a_400(guarded: GatewayProcess) -> None:
    def body() -> Iterator[bytes]:
        yield b'{"token": "'
        for _ in range(64):  # 4 MB, streamed: the gateway stops reading past its 4 KB cap
            yield b"x" * 65536

    answer = httpx.post(f"{guarded.url}/login", content=body(), timeout=10, verify=tls())
    assert answer.status_code == 400
    assert answer.json()["error"] == "the body must be at most 4096 bytes"


# --- hostile input (issue "Hostile input") --------------------------------------------------


def raw_request(
    port: int,
    path: str,
    headers: list[tuple[bytes, bytes]],
    *,
    method: bytes = b"GET",
    body: bytes | None = None,
) -> RawResponse:
    """One request with exactly these header bytes (no client library would send them)."""
    response = exchange(port, build_request(method, path.encode(), headers, body))
    assert response is not None, "the gateway closed the connection without answering"
    return response


def body_of(response: RawResponse) -> object:
    return json.loads(response.body)


COOKIE_READERS = [("GET", "/api/access"), ("GET", "/api/snapshot"), ("GET", "/events")]
SIGNATURE = "0" * 16 + "." + "0" * 64  # a nonce and an HMAC, well-formed but not signed
FORGED_COOKIES = [
    b"sse_monitor_session=admin." + b"9" * 5000 + b"." + SIGNATURE.encode(),  # int() limit
    b"sse_monitor_session=viewer." + b"1" * 4301 + b".x",
    b"sse_monitor_session=admin.\xc2\xb2." + SIGNATURE.encode(),  # a superscript 2, UTF-8
    b"sse_monitor_session=admin.\xb2\xb3." + SIGNATURE.encode(),  # latin-1 digits
    b"sse_monitor_session=admin.\xd9\xa1\xd9\xa2." + SIGNATURE.encode(),  # Arabic-Indic digits
    b"sse_monitor_session=" + b"x" * 8000,
    b"sse_monitor_session=" + b"." * 2000,
    b"sse_monitor_session=admin.1.2.3.4.5",
    b"sse_monitor_session=..",
    b"sse_monitor_session=.",
    b"sse_monitor_session=",
    b"sse_monitor_session=admin..",
    b"sse_monitor_session=root.99999999999." + SIGNATURE.encode(),
    b'sse_monitor_session="admin.1.2"',
    b"sse_monitor_session=admin.-1." + SIGNATURE.encode(),
    b"sse_monitor_session=admin.1e9." + SIGNATURE.encode(),
    b"sse_monitor_session=%61dmin.99999999999." + SIGNATURE.encode(),
    b"sse_monitor_session",
    b";;;=;==;sse_monitor_session;=sse_monitor_session",
    b"sse_monitor_session=a; sse_monitor_session=b; sse_monitor_session=c; " * 50,
    b"\xff\xfe=\xff; sse_monitor_session=\xe9\xe9",
    b'a="unterminated; sse_monitor_session=x',
]


@pytest.mark.parametrize("cookie", FORGED_COOKIES, ids=range(len(FORGED_COOKIES)))
def test_a_forged_cookie_of_any_form_is_no_login(guarded: GatewayProcess, cookie: bytes) -> None:
    failures_before = guarded.log().count("request.failed")
    for method, path in COOKIE_READERS:
        answer = raw_request(guarded.port, path, [(b"Cookie", cookie)], method=method.encode())
        assert answer.status == (200 if path == "/api/access" else 401), (path, answer.body)
        if path == "/api/access":
            assert body_of(answer) == {"enabled": True, "role": None, "session": False}
    logout = raw_request(guarded.port, "/logout", [(b"Cookie", cookie)], method=b"POST")
    assert logout.status == 200 and body_of(logout) == {"role": None}
    assert guarded.log().count("request.failed") == failures_before  # no 500 behind a 200


def test_a_valid_cookie_beside_forged_ones_still_logs_in(guarded: GatewayProcess) -> None:
    value = login(guarded, VIEWER).cookies["sse_monitor_session"]
    for header in (
        f"sse_monitor_session=admin.{'9' * 5000}.x; sse_monitor_session={value}",
        f"sse_monitor_session={value}; sse_monitor_session=junk",
    ):
        answer = raw_request(guarded.port, "/api/access", [(b"Cookie", header.encode())])
        assert body_of(answer) == {"enabled": True, "role": "viewer", "session": True}
    two_headers = [(b"Cookie", b"other=1"), (b"Cookie", f"sse_monitor_session={value}".encode())]
    answer = raw_request(guarded.port, "/api/snapshot", two_headers)
    assert answer.status == 200


@pytest.mark.parametrize(
    "authorization",
    [
        b"Basic dXNlcjpwYXNz",
        b"Digest username=x",
        b"Bearer",
        b"Bearer ",
        b"Bearer\tnot-a-token",
        b"Bearer " + b"A" * 8000,
        b"Bearer \xc3\xa9\xc3\xa9\xc3\xa9-utf8-token",
        b"Bearer \xe9\xff\xfe-latin1-token",
        b"Bearer a b c",
        b"bEaReR ,,,",
        b"\xff\xff \xff",
        b"Negotiate " + b"=" * 3000,
    ],
)
def test_an_odd_authorization_header_is_a_401(
    guarded: GatewayProcess, authorization: bytes
) -> None:
    answer = raw_request(guarded.port, "/api/snapshot", [(b"Authorization", authorization)])
    assert answer.status == 401
    assert body_of(answer) in (
        {"error": "this needs a token: log in, or send Authorization: Bearer", "status": 401},
        {"error": "the token is not valid", "status": 401},
    )
    assert answer.header("www-authenticate") == b'Bearer realm="sse-monitor"'


@pytest.mark.parametrize("query", ["token=%FF%FE", "token=%ED%A0%80", "token=" + "z" * 6000])
def test_an_odd_query_token_is_a_401(guarded: GatewayProcess, query: str) -> None:
    answer = raw_request(guarded.port, f"/api/snapshot?{query}", [])
    assert answer.status == 401


@pytest.mark.parametrize("host", [b"[", b"evil.example:notaport", b"\xff\xfe", b"a]b[c"])
def test_a_hostile_host_header_cannot_break_a_login(guarded: GatewayProcess, host: bytes) -> None:
    body = json.dumps({"token": VIEWER}).encode()
    headers = [(b"Host", host), (b"Content-Type", b"application/json")]
    answer = raw_request(guarded.port, "/login", headers, method=b"POST", body=body)
    assert answer.status == 200, answer.body
    assert body_of(answer) == {"role": "viewer"}


@pytest.mark.parametrize("proto", [b"https", b"HTTPS", b"ftp, https", b"\xff", b"https" * 2000])
def test_x_forwarded_proto_from_a_client_is_not_believed(
    guarded: GatewayProcess, proto: bytes
) -> None:
    body = json.dumps({"token": VIEWER}).encode()
    headers = [(b"X-Forwarded-Proto", proto), (b"Content-Type", b"application/json")]
    answer = raw_request(guarded.port, "/login", headers, method=b"POST", body=body)
    assert answer.status == 200
    cookie = answer.header("set-cookie") or b""
    assert b"secure" not in cookie.lower()  # no trusted proxy: nobody to believe


# Every redirect Starlette could make (a trailing slash, a folder under /static) would take its
# Location from the Host header: with `?token=` in it, the token goes to the named host.
NO_REDIRECT_PATHS = [
    "/events/?token=" + VIEWER,
    "/api/snapshot/?token=" + VIEWER,
    "/api/?token=" + VIEWER,
    "/login/",
    "/static",
    "/static/",
    "/static/js",
    "/static/js/",
    "//evil.example/events",
    "/healthz/",
]


@pytest.mark.parametrize("path", NO_REDIRECT_PATHS)
def test_no_redirect_names_the_requested_host(guarded: GatewayProcess, path: str) -> None:
    answer = raw_request(guarded.port, path, [(b"Host", b"evil.example")])
    assert answer.header("location") is None
    assert not 300 <= answer.status < 400
    assert answer.status == 404
    assert body_of(answer) == {"error": "Not Found", "status": 404}
    assert VIEWER.encode() not in answer.body


# --- logout revokes -------------------------------------------------------------------------


def refused_everywhere(gateway: GatewayProcess, value: str) -> None:
    """The cookie `value` grants nothing: 401 on the stream and a read, no role on /api/access."""
    cookies = httpx.Cookies({"sse_monitor_session": value})
    assert call(gateway, "stream", cookies=cookies).status_code == 401
    assert call(gateway, "read", cookies=cookies).status_code == 401
    access = httpx.get(f"{gateway.url}/api/access", cookies=cookies, verify=tls()).json()
    assert access == {"enabled": True, "role": None, "session": False}


def test_logout_revokes_the_cookie_even_across_a_restart(module_kato: str, tmp_path: Path) -> None:
    env = {
        "SSE_MONITOR_TOKEN": VIEWER,
        "SSE_MONITOR_ADMIN_TOKEN": ADMIN,
        "SSE_MONITOR_DB": str(tmp_path / "gateway.db"),
    }
    with GatewayProcess(module_kato, env=env) as gateway:
        captured = login(gateway, ADMIN).cookies["sse_monitor_session"]
        kept = login(gateway, VIEWER).cookies["sse_monitor_session"]  # another browser
        cookies = httpx.Cookies({"sse_monitor_session": captured})
        assert call(gateway, "read", cookies=cookies).status_code == 200
        logout = httpx.post(f"{gateway.url}/logout", cookies=cookies, verify=tls())
        assert logout.status_code == 200 and logout.json() == {"role": None}
        assert "max-age=0" in logout.headers["set-cookie"].lower()
        refused_everywhere(gateway, captured)
        # already revoked: a no-op
        again = httpx.post(f"{gateway.url}/logout", cookies=cookies, verify=tls())
        assert again.status_code == 200
        fresh = login(gateway, ADMIN).cookies["sse_monitor_session"]
        assert fresh != captured
        fresh_cookies = httpx.Cookies({"sse_monitor_session": fresh})
        assert call(gateway, "read", cookies=fresh_cookies).status_code == 200
        assert gateway.logged_events("access.logout") == ["access.logout"]
    with GatewayProcess(module_kato, env=env, port=gateway.port) as restarted:
        refused_everywhere(restarted, captured)
        for value, role in ((fresh, "admin"), (kept, "viewer")):
            cookies = httpx.Cookies({"sse_monitor_session": value})
            assert call(restarted, "stream", cookies=cookies).status_code == 200
            access = httpx.get(f"{restarted.url}/api/access", cookies=cookies, verify=tls()).json()
            assert access == {"enabled": True, "role": role, "session": True}


def test_logout_without_a_valid_cookie_just_clears_it(guarded: GatewayProcess) -> None:
    forged = f"admin.99999999999.{'0' * 16}.{'0' * 64}"
    for cookies in (None, httpx.Cookies({"sse_monitor_session": forged})):
        logout = httpx.post(f"{guarded.url}/logout", cookies=cookies, verify=tls())
        assert logout.status_code == 200 and logout.json() == {"role": None}
        assert "max-age=0" in logout.headers["set-cookie"].lower()
