"""Hypothesis strategies for hostile requests: exact bytes for query strings, headers, bodies.

Each strategy mixes ordinary values with the ones that have broken parsers before: lone
surrogates (as JSON escapes and as raw UTF-8 bytes ED A0 80), control characters and NUL,
numbers too big for a float or for int()'s 4300-digit limit, dates at the edges of the calendar
with the widest offsets, repeated and percent-encoded keys, `;` separators, deep nesting, and
content types that lie.
"""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import strategies as st

from tests.support.hostile import ADMIN_TOKEN, ALLOWED_ORIGIN, VIEWER_TOKEN

LONE_SURROGATES = ("\ud800", "\udfff", "\udc00", "a\ud83d", "\ud83dz")
HUGE_NUMBERS = (
    "1" + "0" * 400,
    "-" + "9" * 400,
    "9" * 4300,
    "9" * 4301,
    "9" * 6000,
    "1e400",
    "-1e400",
    "1E-400",
    "-0",
    "-0.0",
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "0",
    "-1",
    "00000001",
    "1.5",
    "0x10",
    "1_000",
    " 7",
    "7 ",
    "+7",
    "\u0663",  # an Arabic-Indic three: int() takes it
    "\uff17",  # a full-width seven
    "2147483648",
    "18446744073709551616",
)
CONTROL_CHARS = st.text(st.characters(codec="utf-8", categories=["Cc"]), min_size=1, max_size=4)
ROUTE_WORDS = ("firing", "resolved", "all", "warning", "critical", "info", "metrics", "alerts")


@st.composite
def odd_dates(draw: st.DrawFn) -> str:
    """ISO-8601-ish times at the edges: years 1 and 9999, +-14:00, leap seconds, no offset.
    Half of them are the first or last day of the calendar with an offset that takes the time
    past it in UTC (where an unguarded conversion overflows)."""
    clock = draw(
        st.sampled_from(("00:00:00", "23:59:59", "23:59:60", "24:00:00", "12:00", "00:00:00.5"))
    )
    separator = draw(st.sampled_from(("T", " ", "t")))
    if draw(st.booleans()):
        day, offset = draw(
            st.sampled_from(
                (
                    ("0001-01-01", "+14:00"),
                    ("0001-01-01", "+23:59"),
                    ("0001-01-01", "+00:01"),
                    ("9999-12-31", "-14:00"),
                    ("9999-12-31", "-23:59"),
                )
            )
        )
        clock = clock if clock not in ("23:59:59", "23:59:60", "24:00:00") else "00:00:00"
        if day.startswith("9999"):
            clock = "23:59:59"
        return f"{day}{separator}{clock}{offset}"
    year = draw(st.sampled_from((1, 2, 1969, 1970, 2024, 9998, 9999, 0, 10000)))
    month_day = draw(st.sampled_from(("01-01", "12-31", "02-29", "02-30", "13-01", "00-00")))
    offset = draw(
        st.sampled_from(("", "Z", "+14:00", "-14:00", "+23:59", "-23:59", "+00:00", "+24:00"))
    )
    return f"{year:04d}-{month_day}{separator}{clock}{offset}"


def long_text() -> st.SearchStrategy[str]:
    return st.sampled_from((128, 129, 1000, 4097, 16385, 65536)).map(lambda n: "a" * n)


def hostile_text(words: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    """A string value, ordinary or hostile."""
    return st.one_of(
        st.sampled_from(words + ROUTE_WORDS) if words else st.sampled_from(ROUTE_WORDS),
        st.sampled_from(HUGE_NUMBERS),
        st.sampled_from(LONE_SURROGATES),
        odd_dates(),
        CONTROL_CHARS,
        st.just("\x00"),
        st.text(max_size=20),
        long_text(),
        st.from_regex(r"[0-9a-f]{16}", fullmatch=True),
    )


def as_bytes(text: str) -> bytes:
    """UTF-8, lone surrogates included (as the three bytes a broken encoder would send)."""
    return text.encode("utf-8", "surrogatepass")


@st.composite
def url_encoded(draw: st.DrawFn, text: str) -> bytes:
    """The value in a URL: every byte escaped, the usual escaping, or raw bytes left raw."""
    raw = as_bytes(text)
    how = draw(st.sampled_from(("usual", "every", "raw")))
    if how == "every":
        return "".join(f"%{byte:02X}" for byte in raw).encode()
    if how == "raw":
        return bytes(byte for byte in raw if byte not in b" #\r\n")
    return quote(raw, safe=":/,@").encode()  # "+" escaped: raw, it reads as a space


TOKEN_KEYS = ("token", "%74oken", "t%6Fken", "%74%6F%6B%65%6E", "TOKEN", "access_token", "token[]")


@st.composite
def query_strings(draw: st.DrawFn, params: tuple[str, ...]) -> bytes:
    """A query string over the route's parameters and the token, with repeats and odd keys."""
    keys = st.one_of(
        st.sampled_from(params + TOKEN_KEYS) if params else st.sampled_from(TOKEN_KEYS),
        st.sampled_from(tuple(quote(p, safe="") for p in params) or ("x",)),
        st.sampled_from(tuple(f"%{ord(p[0]):02x}{p[1:]}" for p in params) or ("y",)),
        st.text(max_size=8).map(lambda k: quote(as_bytes(k), safe="")),
    )
    values = hostile_text(params).flatmap(url_encoded)
    # A token only where the gateway reads one (it decodes the key: %74oken is token).
    tokens = st.tuples(
        st.sampled_from((*TOKEN_KEYS[:4], "access_token")),
        st.sampled_from((VIEWER_TOKEN, ADMIN_TOKEN, "wrong")).map(str.encode),
    )
    pairs = draw(st.lists(st.one_of(st.tuples(keys, values), tokens), max_size=5))
    separator = draw(st.sampled_from((b"&", b";", b"&&", b"&;")))
    parts = []
    for key, value in pairs:
        form = draw(st.sampled_from(("pair", "pair", "bare", "empty")))
        if form == "bare":
            parts.append(key.encode())
        elif form == "empty":
            parts.append(key.encode() + b"=")
        else:
            parts.append(key.encode() + b"=" + value)
    return separator.join(parts)


# Headers (values as bytes: obs-text and control characters included, CR and LF not)


def header_bytes(text: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    return text.map(as_bytes).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b""))


@st.composite
def session_cookies(draw: st.DrawFn) -> bytes:
    """sse_monitor_session=<role>.<expires>.<nonce>.<signature>, forged in every part (the
    nonce sometimes left out: the shape before nonces)."""
    # Mostly a real role: only then does the gateway read the rest.
    role = draw(st.sampled_from(("viewer", "admin") * 4 + ("", "root", "viewer\x00", "ADMIN")))
    expires = draw(
        st.one_of(
            st.sampled_from(("9" * 4300, "9" * 4301, "1" + "0" * 4300, "9" * 6000)),
            st.sampled_from(HUGE_NUMBERS),
            st.integers(1, 6000).map(lambda n: "9" * n),
            st.integers(0, 2**64).map(str),
        )
    )
    signature = draw(st.one_of(st.from_regex(r"[0-9a-f]{64}", fullmatch=True), hostile_text()))
    nonce = draw(st.one_of(st.from_regex(r"[0-9a-f]{16}", fullmatch=True), hostile_text()))
    value = (
        f"{role}.{expires}.{nonce}.{signature}"
        if draw(st.booleans())
        else f"{role}.{expires}.{signature}"
    )
    others = draw(
        st.lists(st.sampled_from(("a=b", "sse_monitor_session=", '"x"', "=;", "")), max_size=3)
    )
    separator = draw(st.sampled_from(("; ", ";", ", ")))
    return as_bytes(separator.join([f"sse_monitor_session={value}", *others]))


def authorizations() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.sampled_from((VIEWER_TOKEN, ADMIN_TOKEN)).map(lambda t: f"Bearer {t}"),
        hostile_text().map(lambda t: f"Bearer {t}"),
        st.sampled_from(("Bearer", "Bearer ", "bearer  x  ", "Basic Zm9vOmJhcg==", "Token x")),
    ).map(as_bytes)


def forwarded_for() -> st.SearchStrategy[bytes]:
    hop = st.one_of(
        st.ip_addresses().map(str),
        st.sampled_from(("unknown", "::ffff:127.0.0.1", "[::1]", "127.0.0.1:80", "_hidden")),
        hostile_text(),
    )
    return st.lists(hop, max_size=6).map(", ".join).map(as_bytes)


def origins() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.sampled_from(
            (
                "null",
                "https://evil.example",
                ALLOWED_ORIGIN,
                ALLOWED_ORIGIN + "/",
                ALLOWED_ORIGIN.upper(),
                ALLOWED_ORIGIN + ".evil.example",
                "https://user:pass@ops.allowed.example",
                ALLOWED_ORIGIN.replace("https", "http"),
                "*",
                "",
            )
        ),
        hostile_text(),
    ).map(as_bytes)


def content_types() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.sampled_from(
            (
                "application/json",
                "application/json; charset=utf-16",
                "application/x-www-form-urlencoded",
                "application/x-www-form-urlencoded; charset=latin-1",
                "multipart/form-data; boundary=x",
                "text/plain",
                "application/jsonx",
                "",
            )
        ),
        hostile_text(),
    ).map(as_bytes)


HEADER_VALUES: dict[bytes, st.SearchStrategy[bytes]] = {
    b"Last-Event-ID": header_bytes(hostile_text()),
    b"Cookie": session_cookies(),
    b"Authorization": authorizations(),
    b"X-Forwarded-For": forwarded_for(),
    b"X-Forwarded-Proto": header_bytes(
        st.one_of(st.sampled_from(("https", "http", "https, http", "HTTPS", "")), hostile_text())
    ),
    b"Origin": origins(),
    b"Content-Type": content_types(),
}


@st.composite
def header_sets(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    """Some of the headers we read, each zero to three times, in any order."""
    headers = []
    for name, values in HEADER_VALUES.items():
        for _ in range(draw(st.sampled_from((0, 0, 1, 1, 2, 3)))):
            spelled = draw(st.sampled_from((name, name.lower(), name.upper())))
            headers.append((spelled, draw(values)))
    return draw(st.permutations(headers))


# JSON bodies, written by hand: repeated keys, lone surrogates and huge numbers survive


def json_strings() -> st.SearchStrategy[bytes]:
    """A JSON string: every odd character escaped (lone surrogates as \\ud800), or raw."""
    text = st.one_of(st.sampled_from(LONE_SURROGATES), hostile_text())
    escaped = text.map(
        lambda t: "".join(
            c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else f"\\u{ord(c):04x}" for c in t
        )
    )
    raw = text.map(lambda t: t.replace("\\", "\\\\").replace('"', '\\"'))
    return st.one_of(escaped, raw).map(lambda t: b'"' + as_bytes(t) + b'"')


def json_values(keys: tuple[str, ...]) -> st.SearchStrategy[bytes]:
    leaves = st.one_of(
        json_strings(),
        st.sampled_from(HUGE_NUMBERS).map(str.encode),
        st.sampled_from((b"true", b"false", b"null", b"[]", b"{}")),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3).map(lambda items: b"[" + b",".join(items) + b"]"),
            json_objects(keys, inner),
        ),
        max_leaves=8,
    )


def json_objects(
    keys: tuple[str, ...], values: st.SearchStrategy[bytes]
) -> st.SearchStrategy[bytes]:
    key = st.one_of(st.sampled_from(keys).map(lambda k: b'"' + k.encode() + b'"'), json_strings())
    members = st.lists(st.tuples(key, values), max_size=4)  # repeats allowed, on purpose
    return members.map(lambda ms: b"{" + b",".join(k + b":" + v for k, v in ms) + b"}")


def json_fields(keys: tuple[str, ...]) -> st.SearchStrategy[bytes]:
    """A well-formed object of the endpoint's own fields, each with a hostile value."""
    leaves = st.one_of(
        json_strings(),
        json_strings(),
        st.sampled_from(HUGE_NUMBERS).map(str.encode),
        st.sampled_from((b"true", b"null", b"[]", b"{}", b'"ok"')),
    )
    members = st.lists(st.tuples(st.sampled_from(keys), leaves), min_size=1, max_size=3)
    return members.map(
        lambda ms: b"{" + b",".join(b'"' + k.encode() + b'":' + v for k, v in ms) + b"}"
    )


def deep_nesting() -> st.SearchStrategy[bytes]:
    depth = st.sampled_from((10, 100, 999, 1000, 1500, 2048, 5000))
    opener = st.sampled_from(((b"[", b"]"), (b'{"by":', b"}"), (b'{"token":', b"}")))
    return st.tuples(depth, opener).map(lambda d: d[1][0] * d[0] + b"1" + d[1][1] * d[0])


def json_bodies(keys: tuple[str, ...], valid: tuple[bytes, ...]) -> st.SearchStrategy[bytes]:
    """Bodies for a JSON endpoint: well-formed with hostile values, and malformed in many ways."""
    shaped = json_objects(keys, json_values(keys))
    return st.one_of(
        st.sampled_from(valid),
        shaped,
        shaped,
        json_values(keys),
        deep_nesting(),
        st.binary(max_size=64),
        st.tuples(shaped, st.sampled_from(("utf-16", "utf-32", "latin-1"))).map(
            lambda b: (
                b[0].decode("utf-8", "surrogatepass").encode(b[1], "surrogatepass")
                if b[1] != "latin-1"
                else b[0].decode("utf-8", "replace").encode("latin-1", "replace")
            )
        ),
        st.tuples(shaped, st.binary(min_size=1, max_size=4)).map(lambda b: b[0] + b[1]),
        shaped.map(lambda b: b"\xef\xbb\xbf" + b),
        st.sampled_from((4096, 4097, 16384, 16385, 40000)).map(
            lambda n: b'{"by":"' + b"a" * n + b'"}'
        ),
    )
