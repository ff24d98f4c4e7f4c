"""A real Docker engine of the tests' own: dockerd in a temporary folder, with a busybox image.

No registry is reachable, so the image is imported from the machine's busybox binary. The engine
can be killed and started again on the same socket and data, as an engine restart would be.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

IMAGE = "test/busybox:latest"
APPLETS = ("sh", "sleep", "echo", "cat", "yes", "true", "head", "false")


def missing_parts() -> str | None:
    """Why a Docker engine cannot run here, or None when it can."""
    for program in ("dockerd", "docker", "busybox"):
        if shutil.which(program) is None:
            return f"{program} is not installed (apt-get install docker.io busybox-static)"
    if os.geteuid() != 0:
        return "dockerd needs root"
    linked = subprocess.run(["ldd", shutil.which("busybox") or ""], capture_output=True, text=True)
    if linked.returncode == 0 and "=>" in linked.stdout:
        return "busybox is dynamically linked; the image needs busybox-static"
    return None


class DockerEngineProcess:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sse-monitor-docker-"))
        self.socket = self.root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def start(self, timeout: float = 30) -> DockerEngineProcess:
        for folder in ("data", "exec"):
            (self.root / folder).mkdir(exist_ok=True)
        log = (self.root / "dockerd.log").open("ab")
        self.proc = subprocess.Popen(
            [
                "dockerd",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--storage-driver=overlay2",
                f"--data-root={self.root / 'data'}",
                f"--exec-root={self.root / 'exec'}",
                f"--pidfile={self.root / 'dockerd.pid'}",
                "-H",
                self.host,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while subprocess.run(["docker", "info"], env=self.env, capture_output=True).returncode:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start:\n{self.log()[-2000:]}")
            time.sleep(0.1)
        return self

    def stop(self, timeout: float = 30) -> None:
        """Kill the engine (SIGTERM, as an operator or systemd would) and wait for it to go."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def import_busybox(self) -> None:
        rootfs = self.root / "rootfs"
        for folder in ("bin", "tmp", "proc", "sys", "dev", "etc"):
            (rootfs / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(shutil.which("busybox") or "/bin/busybox", rootfs / "bin" / "busybox")
        for applet in APPLETS:
            link = rootfs / "bin" / applet
            if not link.exists():
                link.symlink_to("busybox")
        tarball = self.root / "busybox.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
        self.docker("import", str(tarball), IMAGE)

    def docker(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        if check and result.returncode:
            raise RuntimeError(f"docker {' '.join(args)}: {result.stderr}")
        return result.stdout.strip()

    def run(self, name: str, *args: str, command: str = "sleep 3600") -> str:
        """Start a container from the busybox image; extra args go before the image."""
        return self.docker(
            "run", "-d", "--name", name, "--network", "none", *args, IMAGE, "sh", "-c", command
        )

    def stats(self, name: str) -> dict[str, str]:
        """`docker stats --no-stream` for one container, as the CLI prints it."""
        return json.loads(self.docker("stats", "--no-stream", "--format", "{{json .}}", name))

    def remove_all(self) -> None:
        ids = self.docker("ps", "-aq", check=False).split()
        if ids:
            self.docker("rm", "-f", *ids, check=False)

    def log(self) -> str:
        path = self.root / "dockerd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def destroy(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.remove_all()
        self.stop()
        subprocess.run(["umount", "-R", str(self.root / "data")], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
