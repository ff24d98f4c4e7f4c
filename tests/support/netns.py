"""A network namespace joined to this host by a veth pair: a machine of its own for a partition
test, whose TCP to a host port can be cut and healed (iptables inside the namespace).

    with Namespace() as namespace:
        command = [*namespace.prefix, "redis-cli", "-h", namespace.outside, ...]
        namespace.cut(port)  # its packets to the host's `port` dropped: a silent partition
        namespace.heal(port)

Each namespace takes the first free index of its veth pair's names (creating a link is atomic,
so concurrent test runs never share one), and a /30 of 10.213.0.0/16 named by that index: the
host end is `outside`, the namespace's end `inside`. Leaving the block deletes the pair and the
namespace, and ends whatever still runs inside it, also when the test failed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from typing import Self

import pytest

MAX_NAMESPACES = 16_384  # /30s in 10.213.0.0/16
IP_TIMEOUT = 10  # seconds any one `ip` or `iptables` command may take


def missing_netns() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces and iptables need root"
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install {package}; .ci/run does)"
    return None


def skip_without_netns() -> None:
    """Skip the calling test where namespaces cannot be made (a failure under CI=true)."""
    reason = missing_netns()
    if reason:
        pytest.skip(f"no network namespaces: {reason}")


class Namespace:
    """One namespace and its veth pair, made on entering the block and deleted on leaving it."""

    def __init__(self) -> None:
        self.index: int | None = None

    @property
    def name(self) -> str:
        return f"ssm-test-{self._index}"

    @property
    def prefix(self) -> tuple[str, ...]:
        """Put in front of a command to run it inside the namespace."""
        return ("ip", "netns", "exec", self.name)

    @property
    def outside(self) -> str:
        """The host's address on the pair: where the namespace reaches the host's servers."""
        return self._address(1)

    @property
    def inside(self) -> str:
        """The namespace's address: where the host reaches a server running inside."""
        return self._address(2)

    def cut(self, port: int) -> None:
        """Drop every TCP packet from the namespace to the host's `port`, open connections
        included: no refusal, no reset, silence (as a lost link or a dead switch gives)."""
        self._iptables("-A", port)

    def heal(self, port: int) -> None:
        """Undo cut(port)."""
        self._iptables("-D", port)

    def create(self) -> Self:
        skip_without_netns()
        self.index = self._take_index()
        try:
            run("ip", "netns", "add", self.name)
            run("ip", "link", "set", self._veth("in"), "netns", self.name)
            run("ip", "addr", "add", f"{self.outside}/30", "dev", self._veth("out"))
            run("ip", "link", "set", self._veth("out"), "up")
            inside = ("ip", "-n", self.name)
            run(*inside, "addr", "add", f"{self.inside}/30", "dev", self._veth("in"))
            run(*inside, "link", "set", self._veth("in"), "up")
            run(*inside, "link", "set", "lo", "up")
            listed = run(*self.prefix, "iptables", "-w", str(IP_TIMEOUT), "-S", check=False)
        except BaseException:
            self.delete()
            raise
        if listed.returncode != 0:
            self.delete()
            pytest.skip(f"no iptables in a network namespace: {listed.stderr.strip()}")
        return self

    def delete(self) -> None:
        """End what still runs inside, then delete the pair and the namespace (each may be gone
        already: a failed create() calls this too)."""
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        run("ip", "link", "del", self._veth("out"), check=False)
        run("ip", "netns", "del", self.name, check=False)

    def _take_index(self) -> int:
        """The first index whose veth pair this call could create (another run's is taken)."""
        for index in range(MAX_NAMESPACES):
            pair = (f"ssmo{index}", "type", "veth", "peer", "name", f"ssmi{index}")
            made = run("ip", "link", "add", *pair, check=False)
            if made.returncode == 0:
                return index
            if "exists" not in made.stderr:
                pytest.skip(f"no network namespaces: ip link add failed: {made.stderr.strip()}")
        raise RuntimeError(f"all {MAX_NAMESPACES} veth pairs are taken (left by killed runs?)")

    def _pids(self) -> list[int]:
        listed = run("ip", "netns", "pids", self.name, check=False)
        return [int(pid) for pid in listed.stdout.split()] if listed.returncode == 0 else []

    def _iptables(self, action: str, port: int) -> None:
        rule = ["-p", "tcp", "-d", self.outside, "--dport", str(port), "-j", "DROP"]
        run(*self.prefix, "iptables", "-w", str(IP_TIMEOUT), action, "OUTPUT", *rule)

    def _veth(self, end: str) -> str:
        return f"ssm{end[0]}{self._index}"

    def _address(self, host: int) -> str:
        base = self._index * 4
        return f"10.213.{base // 256}.{base % 256 + host}"

    @property
    def _index(self) -> int:
        assert self.index is not None, "the namespace was never created"
        return self.index

    def __enter__(self) -> Self:
        return self.create()

    def __exit__(self, *exc_info: object) -> None:
        self.delete()


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """One `ip` or `iptables` command; with `check`, its failure raises with what it said."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=IP_TIMEOUT)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return done
