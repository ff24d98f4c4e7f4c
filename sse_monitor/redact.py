"""Keep credentials out of logs, errors and events.

KATO echoes URLs with passwords in them (its `redis_url`), operators put credentials in
`KATO_URL`, clients send tokens in query strings, headers and cookies, and libraries log all of
these at debug level. Two nets, one behind the other: `scrub` recognises the shapes a secret
travels in (a URL's user info, a `token=` query parameter however it is spelled, an
Authorization or Cookie header), and a `Scrubber` also knows the configured secrets themselves,
so it finds them wherever they turn up, in whatever shape.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit, urlunsplit

MASK = "***"

# scheme://user:password@host -> scheme://***@host, anywhere in a text. Anchored on "://",
# not on the scheme: a scheme pattern is tried from every letter of a long run of letters, and
# scrubbing then takes quadratic time (minutes for the 1 MB answer a broken KATO may send).
_CREDENTIALS_IN_URL = re.compile(r"://[^\s/@]+@")

# Where a query parameter starts, after ?, & or ; (Python's parser splits only at &; a ; may
# still carry one to a log). A lookahead, so that a parameter hidden in another's value is
# found too (`?a=;token=x`), in one pass: no recursion for a hostile URL to exhaust.
_QUERY_PARAMETER = re.compile(r"(?=[?&;](?P<key>[^=&;?#\s\"'<>]{1,64})=)")
# A value runs to the next &, so that a ; or ? inside a token is masked with it.
_QUERY_VALUE = re.compile(r"[^&\s\"'#<>]*")
# The gateway's own access tokens are accepted in the query string, for curl.
SECRET_PARAMETERS = frozenset({"token", "access_token"})

# `Authorization: Bearer x`, `'cookie': 'a=b'`, `(b'set-cookie', b'...')`: the header's value,
# to the end of the line or the closing quote.
_SECRET_HEADER = re.compile(
    r"(?P<name>\b(?:proxy-)?authorization|\b(?:set-)?cookie)"
    r"(?P<sep>['\"]?\s*:\s*(?:(?-i:b)['\"]|['\"])?|['\"]\s*,\s*(?-i:b)?['\"])"
    r"(?P<value>[^\r\n'\"]+)",
    re.IGNORECASE,
)
# Credentials given without their header's name (`Bearer x` in an error message).
_AUTH_SCHEME = re.compile(r"\b(?P<scheme>Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
# The login cookie (an HMAC-signed session), by name, wherever it is set or sent.
_SESSION_COOKIE = re.compile(r"(?P<name>sse_monitor_session=)[^;\s'\"]+")

# A configured secret shorter than this is not searched for by value: masking every "pw" in
# every line would wreck the log and protect little. The shapes above still apply to it.
MIN_SECRET_LENGTH = 4


def scrub(text: str) -> str:
    """`text` with URL credentials, query-string tokens, secret headers and our cookie masked."""
    text = _CREDENTIALS_IN_URL.sub(f"://{MASK}@", text)
    text = scrub_query(text)
    text = _SECRET_HEADER.sub(rf"\g<name>\g<sep>{MASK}", text)
    text = _AUTH_SCHEME.sub(rf"\g<scheme> {MASK}", text)
    return _SESSION_COOKIE.sub(rf"\g<name>{MASK}", text)


def scrub_query(text: str) -> str:
    """Mask the value of every `token=` parameter in `text`, however its key is spelled.

    Starlette percent-decodes keys (`%74oken=` is `token=`), so each key is decoded before it
    is compared, as often as it is encoded, and compared without case or padding.
    """

    masked: list[tuple[int, int]] = []  # the spans of secret values, in order
    for match in _QUERY_PARAMETER.finditer(text):
        if _decoded_key(match["key"]) not in SECRET_PARAMETERS:
            continue
        start = match.end("key") + 1
        end = _QUERY_VALUE.match(text, start).end()  # type: ignore[union-attr]
        if masked and start <= masked[-1][1]:  # inside the value masked before
            masked[-1] = (masked[-1][0], max(end, masked[-1][1]))
        else:
            masked.append((start, end))
    if not masked:
        return text
    parts, last = [], 0
    for start, end in masked:
        parts += [text[last:start], MASK]
        last = end
    parts.append(text[last:])
    return "".join(parts)


def _decoded_key(key: str) -> str:
    for _ in range(4):  # %2574oken is %74oken once decoded; deeper nesting is not plausible
        decoded = unquote_plus(key)
        if decoded == key:
            break
        key = decoded
    return key.strip().lower()


def redact_url(url: str) -> str:
    """The URL with any user and password replaced, for logs and messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return scrub(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{MASK}@{host}"))


class Scrubber:
    """`scrub`, and every known secret replaced by value, in the forms a log may carry it.

    Built by the app's entry points from the settings (`from_secrets`), and handed to the
    logging setup: the tokens, and the password and `user:password` of each URL with
    credentials, each also percent-encoded, base64-encoded (HTTP Basic) and JSON-escaped.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        found = {secret for secret in secrets if len(secret) >= MIN_SECRET_LENGTH}
        # Longest first: `user:pass` is masked whole before `pass` is looked for.
        self.secrets: tuple[str, ...] = tuple(sorted(found, key=len, reverse=True))

    @classmethod
    def from_secrets(cls, tokens: Iterable[str | None], urls: Iterable[str | None]) -> Scrubber:
        forms: set[str] = set()
        for token in tokens:
            if token:
                forms |= _forms(token)
        for url in urls:
            if url:
                forms |= _url_secret_forms(url)
        return cls(forms)

    def text(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return scrub(text)

    def value(self, value: Any) -> Any:
        """Strings scrubbed however deep they sit; a secret header's value masked whole."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                key: MASK if _is_secret_header(key) else self.value(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return type(value)(self.value(item) for item in value)
        if isinstance(value, bytes | bytearray):
            return self.text(bytes(value).decode("utf-8", "replace"))
        return value


def _is_secret_header(key: object) -> bool:
    name = key.decode("latin-1") if isinstance(key, bytes) else key
    return isinstance(name, str) and name.lower() in (
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
    )


def _forms(secret: str) -> set[str]:
    """The secret, percent-encoded (either case of hex), base64-encoded, and JSON-escaped."""
    encoded = quote(secret, safe="")
    return {
        secret,
        encoded,
        re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), encoded),
        quote_plus(secret, safe=""),
        base64.b64encode(secret.encode()).decode(),
        base64.urlsafe_b64encode(secret.encode()).decode(),
        json.dumps(secret)[1:-1],
    }


def _url_secret_forms(url: str) -> set[str]:
    """The password and `user:password` of a URL, as written and decoded, in every form."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return set()
    if "@" not in parts.netloc:
        return set()
    userinfo = parts.netloc.rsplit("@", 1)[0]
    user, _, password = userinfo.partition(":")
    if not password:
        return _forms(userinfo) | _forms(unquote(userinfo))
    forms: set[str] = set()
    for candidate in (
        password,
        unquote(password),
        userinfo,
        f"{unquote(user)}:{unquote(password)}",
    ):
        forms |= _forms(candidate)
    return forms
