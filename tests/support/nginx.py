"""A real nginx in front of the gateway, as a deployment would run it.

NginxProcess serves the gateway under a path prefix with a config of its own (the page tests,
through prefixed_nginx); ShippedNginx runs deploy/nginx.conf itself, wrapped in a main config
for a temporary prefix, in front of one gateway or of several nodes (tests/support/cluster.py).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.processes import LoopbackServer

# What every nginx of ours says: in the foreground, every path under its own prefix `root`, and
# the http {} block's own lines after these.
MAIN = """
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
{http}
}}
"""

# NginxProcess's http {} block: the gateway under `prefix`/, the prefix stripped.
PREFIXED = """
  log_format paths '$request_uri $status';
  access_log {root}/access.log paths;
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
"""


def skip_without_nginx() -> None:
    """Skip the calling test when nginx is missing (a failure under CI=true, see conftest)."""
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")


class Nginx(LoopbackServer):
    """An nginx of our own: a temporary prefix (`root`) for its config, logs and pid, and a free
    port. Subclasses write `root/nginx.conf` for the port of each start (write_config)."""

    name = "nginx"

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sse-monitor-nginx-"))
        self.conf = self.root / "nginx.conf"
        super().__init__(self.root / "nginx.log")

    def write_config(self) -> None:
        raise NotImplementedError

    def main_config(self, http: str) -> str:
        """The main config around the lines of an http {} block."""
        return MAIN.format(root=self.root, http=http.strip("\n"))

    def command(self) -> list[str]:
        return ["nginx", "-p", str(self.root), "-c", str(self.conf)]

    def launch(self) -> subprocess.Popen[bytes]:
        self.write_config()  # for this start's port
        (self.root / "nginx.pid").unlink(missing_ok=True)  # a killed nginx leaves its own
        return super().launch()

    def ready(self) -> bool:
        # nginx writes its pid file once it holds its port (it retries a taken one for a few
        # seconds): until then, whatever answers on the port is not this nginx.
        if not (self.root / "nginx.pid").exists():
            return False
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def error_log(self) -> str:
        log = self.root / "error.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class NginxProcess(Nginx):
    """nginx proxying `prefix`/ to the gateway on `upstream_port`, prefix stripped."""

    def __init__(self, upstream_port: int, prefix: str = "/monitor") -> None:
        super().__init__()
        self.upstream_port = upstream_port
        self.prefix = prefix

    def write_config(self) -> None:
        http = PREFIXED.format(
            root=self.root, upstream=self.upstream_port, port=self.port, prefix=self.prefix
        )
        self.conf.write_text(self.main_config(http))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}/"

    def requests(self) -> list[str]:
        """Every URI asked of nginx so far, with its status: `/monitor/events 200`."""
        log = self.root / "access.log"
        return log.read_text().splitlines() if log.exists() else []

    def outside_prefix(self) -> list[str]:
        """The requests (as requests() gives them) for a URI outside the prefix: a page whose
        URLs are all relative makes none."""
        return [line for line in self.requests() if not line.startswith(f"{self.prefix}/")]


@contextmanager
def prefixed_nginx(upstream_port: int, prefix: str = "/monitor") -> Iterator[NginxProcess]:
    """NginxProcess in front of the gateway (the test skipped without nginx). On leaving, the
    test fails if anything was asked outside the prefix: every URL in the page is relative."""
    skip_without_nginx()
    with NginxProcess(upstream_port, prefix) as nginx:
        yield nginx
        outside = nginx.outside_prefix()
    assert not outside, f"requests outside the prefix: {outside}"


DEPLOY_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"

# ShippedNginx's http {} block around deploy/nginx.conf: what /etc/nginx/nginx.conf would say,
# with every path under a temporary prefix. It says what a busy site's often says (gzip for every
# type, buffering that ignores X-Accel-Buffering, a short read timeout), so a stream only works if
# the shipped file's own settings override each of them for /events.
WRAPPER = """
  access_log {root}/other-access.log;
  gzip on;
  gzip_types text/event-stream application/json;
  gzip_min_length 0;
  proxy_buffering on;
  proxy_ignore_headers X-Accel-Buffering;
  proxy_read_timeout {read_timeout}s;
  include {root}/sse-monitor.conf;
"""

# The only lines of deploy/nginx.conf a test changes (ports, keeping their parameters, and the
# log's path); the prefix example is taken from the file's own comment. The upstream's one
# server line becomes one line per gateway node, each with the shipped line's parameters.
SHIPPED_LISTEN = re.compile(r"^    listen 80(?P<parameters>[^;\n]*);\n", re.M)
SHIPPED_SERVER = re.compile(r"^    server 127\.0\.0\.1:8080(?P<parameters>[^;\n]*);\n", re.M)
SHIPPED_ACCESS_LOG = "/var/log/nginx/sse-monitor.access.log"
PREFIX_EXAMPLE_START = "    # location = /monitor {\n"
# A line of the shipped access log: `... "GET /events HTTP/1.1" 200 512 3.004 "agent" 127.0.0.1:1`
UPSTREAM_LINE = re.compile(
    r'"[A-Z]+ (?P<uri>\S+) [^"]*" (?P<status>\d{3}) .* "[^"]*" (?P<upstreams>[^"]*)$'
)


def shipped_max_fails() -> int:
    """The shipped upstream's `max_fails`: how many refusals before nginx skips a node."""
    found = SHIPPED_SERVER.search(DEPLOY_CONF.read_text())
    assert found is not None, "deploy/nginx.conf has no `server 127.0.0.1:8080 ...;` line"
    parameters = dict(p.split("=", 1) for p in found["parameters"].split())
    return int(parameters.get("max_fails", "1"))


def replace_once(text: str, old: str, new: str) -> str:
    """`old` replaced by `new`; an error if the shipped file no longer contains `old` once."""
    count = text.count(old)
    if count != 1:
        raise AssertionError(
            f"deploy/nginx.conf should contain {old!r} exactly once, found {count}: "
            "update tests/support/nginx.py along with the shipped file"
        )
    return text.replace(old, new)


def upstream_servers(text: str, ports: Sequence[int]) -> str:
    """The shipped upstream's server line replaced by one per port, with the same parameters."""
    found = list(SHIPPED_SERVER.finditer(text))
    if len(found) != 1:
        raise AssertionError(
            f"deploy/nginx.conf should have one `server 127.0.0.1:8080 ...;` line, found "
            f"{len(found)}: update tests/support/nginx.py along with the shipped file"
        )
    line = found[0]
    servers = "".join(f"    server 127.0.0.1:{port}{line['parameters']};\n" for port in ports)
    return text[: line.start()] + servers + text[line.end() :]


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


def shipped_config(
    root: Path, port: int, upstreams: Sequence[int], with_prefix_example: bool
) -> str:
    """deploy/nginx.conf with its ports and log path replaced (and the prefix example on)."""
    text = DEPLOY_CONF.read_text()
    example = prefix_example(text) if with_prefix_example else ""
    listen = list(SHIPPED_LISTEN.finditer(text))
    if len(listen) != 1:
        raise AssertionError("deploy/nginx.conf should have one `listen 80 ...;` line")
    parameters = listen[0]["parameters"]  # kept: the backlog
    text = SHIPPED_LISTEN.sub(f"    listen 127.0.0.1:{port}{parameters};\n", text)
    text = upstream_servers(text, upstreams)
    text = replace_once(text, SHIPPED_ACCESS_LOG, str(root / "access.log"))
    if example:
        end = text.rstrip().rfind("}")  # the server block's closing brace
        text = text[:end] + example + text[end:]
    return text


class ShippedNginx(Nginx):
    """nginx running deploy/nginx.conf in front of the gateway nodes on `upstream_ports`."""

    def __init__(
        self,
        upstream_ports: Sequence[int],
        with_prefix_example: bool = False,
        read_timeout: int = 1,
    ) -> None:
        super().__init__()
        self.upstream_ports = list(upstream_ports)
        self.with_prefix_example = with_prefix_example
        self.read_timeout = read_timeout

    def write_config(self) -> None:
        site = shipped_config(self.root, self.port, self.upstream_ports, self.with_prefix_example)
        (self.root / "sse-monitor.conf").write_text(site)
        http = WRAPPER.format(root=self.root, read_timeout=self.read_timeout)
        self.conf.write_text(self.main_config(http))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def check(self) -> subprocess.CompletedProcess[str]:
        """`nginx -t` on the wrapped config."""
        self.write_config()
        command = ["nginx", "-t", "-p", str(self.root), "-c", str(self.conf)]
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    def access_log(self) -> str:
        log = self.root / "access.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def upstreams(self, uri: str) -> list[tuple[int, list[str]]]:
        """Each logged request for `uri`: its status, and the nodes nginx tried for it in order
        (the shipped log's $upstream_addr). A stream is logged when it ends."""
        found = (UPSTREAM_LINE.search(line) for line in self.access_log().splitlines())
        return [
            (int(line["status"]), line["upstreams"].split(", "))
            for line in found
            if line is not None and line["uri"] == uri
        ]
