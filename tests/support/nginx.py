"""A real nginx in front of the gateway, as a deployment would run it.

NginxProcess serves the gateway under a path prefix with a config of its own (the page tests);
ShippedNginx runs deploy/nginx.conf itself, wrapped in a main config for a temporary prefix.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest

from tests.support.processes import free_port

CONFIG = """
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  log_format paths '$request_uri $status';
  access_log {root}/access.log paths;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  upstream gateway {{ server 127.0.0.1:{upstream}; keepalive 16; }}
  server {{
    listen 127.0.0.1:{port};
    location = {prefix} {{ return 301 {prefix}/; }}
    location {prefix}/ {{
      proxy_pass http://gateway/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_cache off;
      proxy_read_timeout 1h;
    }}
  }}
}}
"""


def skip_without_nginx() -> None:
    """Skip the calling test when nginx is missing (a failure under CI=true, see conftest)."""
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")


class Nginx:
    """An nginx of our own: a temporary prefix (`root`) for its config, logs and pid, a free
    port, and a start that waits until it listens. Subclasses write `root/nginx.conf`."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sse-monitor-nginx-"))
        self.port = free_port()
        self.conf = self.root / "nginx.conf"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10) -> Self:
        self.proc = subprocess.Popen(
            ["nginx", "-p", str(self.root), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.error_log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("nginx did not start") from None
                time.sleep(0.05)

    def error_log(self) -> str:
        log = self.root / "error.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class NginxProcess(Nginx):
    """nginx proxying `prefix`/ to the gateway on `upstream_port`, prefix stripped."""

    def __init__(self, upstream_port: int, prefix: str = "/monitor") -> None:
        super().__init__()
        self.prefix = prefix
        config = CONFIG.format(
            root=self.root, upstream=upstream_port, port=self.port, prefix=prefix
        )
        self.conf.write_text(config)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}/"

    def requests(self) -> list[str]:
        """Every URI asked of nginx so far, with its status: `/monitor/events 200`."""
        log = self.root / "access.log"
        return log.read_text().splitlines() if log.exists() else []


DEPLOY_CONF = Path(__file__).resolve().parent.parent / "deploy" / "nginx.conf"

# The main config around deploy/nginx.conf: what /etc/nginx/nginx.conf would be, with every path
# under a temporary prefix. Its http {} block says what a busy site's often says (gzip for every
# type, buffering that ignores X-Accel-Buffering, a short read timeout), so a stream only works if
# the shipped file's own settings override each of them for /events.
WRAPPER = """
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  access_log {root}/other-access.log;
  gzip on;
  gzip_types text/event-stream application/json;
  gzip_min_length 0;
  proxy_buffering on;
  proxy_ignore_headers X-Accel-Buffering;
  proxy_read_timeout {read_timeout}s;
  include {root}/sse-monitor.conf;
}}
"""

# The only lines of deploy/nginx.conf a test changes (ports and the log's path); the prefix
# example is taken from the file's own comment.
SHIPPED_LISTEN = "    listen 80;\n"
SHIPPED_UPSTREAM = "    server 127.0.0.1:8080;\n"
SHIPPED_ACCESS_LOG = "/var/log/nginx/sse-monitor.access.log"
PREFIX_EXAMPLE_START = "    # location = /monitor {\n"


def replace_once(text: str, old: str, new: str) -> str:
    """`old` replaced by `new`; an error if the shipped file no longer contains `old` once."""
    count = text.count(old)
    if count != 1:
        raise AssertionError(
            f"deploy/nginx.conf should contain {old!r} exactly once, found {count}: "
            "update tests/support/nginx.py along with the shipped file"
        )
    return text.replace(old, new)


def prefix_example(shipped: str) -> str:
    """The commented prefix locations of deploy/nginx.conf, uncommented."""
    start = shipped.find(PREFIX_EXAMPLE_START)
    if start < 0:
        raise AssertionError(f"deploy/nginx.conf has no {PREFIX_EXAMPLE_START.strip()!r} example")
    lines = []
    for line in shipped[start:].splitlines():
        if not line.startswith("    #"):
            break
        lines.append("    " + line.removeprefix("    #").removeprefix(" "))
    return "\n".join(lines) + "\n"


def shipped_config(root: Path, port: int, upstream: int, with_prefix_example: bool) -> str:
    """deploy/nginx.conf with its ports and log path replaced (and the prefix example on)."""
    text = DEPLOY_CONF.read_text()
    example = prefix_example(text) if with_prefix_example else ""
    text = replace_once(text, SHIPPED_LISTEN, f"    listen 127.0.0.1:{port};\n")
    text = replace_once(text, SHIPPED_UPSTREAM, f"    server 127.0.0.1:{upstream};\n")
    text = replace_once(text, SHIPPED_ACCESS_LOG, str(root / "access.log"))
    if example:
        end = text.rstrip().rfind("}")  # the server block's closing brace
        text = text[:end] + example + text[end:]
    return text


class ShippedNginx(Nginx):
    """nginx running deploy/nginx.conf in front of the gateway on `upstream_port`."""

    def __init__(
        self, upstream_port: int, with_prefix_example: bool = False, read_timeout: int = 1
    ) -> None:
        super().__init__()
        try:
            site = shipped_config(self.root, self.port, upstream_port, with_prefix_example)
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        self.conf.write_text(WRAPPER.format(root=self.root, read_timeout=read_timeout))
        (self.root / "sse-monitor.conf").write_text(site)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def check(self) -> subprocess.CompletedProcess[str]:
        """`nginx -t` on the wrapped config."""
        command = ["nginx", "-t", "-p", str(self.root), "-c", str(self.conf)]
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    def access_log(self) -> str:
        log = self.root / "access.log"
        return log.read_text(errors="replace") if log.exists() else ""
