"""Keep credentials out of logs, errors and events.

KATO echoes URLs with passwords in them (its `redis_url`), and operators put credentials in
`KATO_URL`; anything that may carry such a URL passes through here before leaving the process.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# scheme://user:password@host -> scheme://***@host, anywhere in a text. Anchored on "://",
# not on the scheme: a scheme pattern is tried from every letter of a long run of letters, and
# scrubbing then takes quadratic time (minutes for the 1 MB answer a broken KATO may send).
_CREDENTIALS_IN_URL = re.compile(r"://[^\s/@]+@")


# ?token=... (the gateway's own access tokens, accepted in the query string for curl).
_TOKEN_IN_QUERY = re.compile(r"(?P<key>[?&](?:token|access_token)=)[^&\s\"'#]*")


def scrub(text: str) -> str:
    """Replace the credentials of every URL found in `text`, and tokens in query strings."""
    text = _CREDENTIALS_IN_URL.sub("://***@", text)
    return _TOKEN_IN_QUERY.sub(r"\g<key>***", text)


def redact_url(url: str) -> str:
    """The URL with any user and password replaced, for logs and messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return scrub(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))
