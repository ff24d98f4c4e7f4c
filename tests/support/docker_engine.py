"""A real Docker engine of the tests' own: dockerd in a temporary folder, with a busybox image.

No registry is reachable, so the image is imported from the machine's busybox binary. The engine
can be killed and started again on the same socket and data, as an engine restart would be.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.processes import ManagedProcess

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


class DockerEngineProcess(ManagedProcess):
    """dockerd with its data, sockets and log in a temporary folder, on a socket of its own
    (`host`); stop() and start() again is an engine restart on the same socket and data."""

    name = "dockerd"
    probe_interval = 0.1
    start_timeout = 30.0
    stop_timeout = 30.0
    new_session = True

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sse-monitor-docker-"))
        for folder in ("data", "exec"):
            (self.root / folder).mkdir()
        self.socket = self.root / "docker.sock"
        self.host = f"unix://{self.socket}"
        super().__init__(self.root / "dockerd.log")

    @property
    def client_env(self) -> dict[str, str]:
        """The environment of a docker CLI speaking to this engine."""
        return {**os.environ, "DOCKER_HOST": self.host}

    def command(self) -> list[str]:
        return [
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
        ]

    def ready(self) -> bool:
        try:
            info = subprocess.run(
                ["docker", "info"], env=self.client_env, capture_output=True, timeout=10
            )
        except subprocess.TimeoutExpired:
            return False
        return info.returncode == 0

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
            ["docker", *args], env=self.client_env, capture_output=True, text=True, timeout=60
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

    def close(self) -> None:
        """Remove its containers, stop it, and remove its folder (unmounting what it left)."""
        if self.running:
            self.remove_all()
        self.stop()
        subprocess.run(["umount", "-R", str(self.root / "data")], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
