"""A real nginx in front of the gateway, serving it under a path prefix, as a deployment would."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from tests.processes import free_port

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
    location = /nginx-ready {{ access_log off; return 204; }}
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


def missing_nginx() -> str | None:
    if shutil.which("nginx") is None:
        return "nginx is not installed (apt-get install nginx)"
    return None


class NginxProcess:
    """nginx proxying `prefix`/ to the gateway on `upstream_port`, prefix stripped."""

    def __init__(self, upstream_port: int, prefix: str = "/monitor") -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sse-monitor-nginx-"))
        self.port = free_port()
        self.prefix = prefix
        self.config = CONFIG.format(
            root=self.root, upstream=upstream_port, port=self.port, prefix=prefix
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}/"

    def start(self, timeout: float = 10) -> Self:
        conf = self.root / "nginx.conf"
        conf.write_text(self.config)
        self.proc = subprocess.Popen(
            ["nginx", "-p", str(self.root), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                log = (self.root / "error.log").read_text(errors="replace")
                raise RuntimeError(f"nginx exited: {log}")
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/nginx-ready", timeout=1)
                return self
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise TimeoutError("nginx did not start") from None
                time.sleep(0.05)

    def requests(self) -> list[str]:
        """Every URI asked of nginx so far, with its status: `/monitor/events 200`."""
        log = self.root / "access.log"
        return log.read_text().splitlines() if log.exists() else []

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
