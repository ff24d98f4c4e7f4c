"""The one TLS context the tests' HTTP clients share.

httpx builds a new SSL context for every client it makes, loading the whole CA bundle: 50 ms of
CPU each, and the tests make thousands of clients (every readiness probe, SSE stream and
request to the simulated KATO). Loaded once, it is the same trust, at no cost per client.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def tls() -> ssl.SSLContext:
    """httpx's own default context (the CA bundle it would load), made once per process."""
    return httpx.create_ssl_context()
