"""Packages from the npm registry as the tests use them: each pinned release installed once into
a cache folder outside the checkout, whole or not at all, with Debian's Node and npm (.ci/run
installs them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

INSTALL_TIMEOUT = 300


def missing_node() -> str | None:
    """Why npm packages cannot be installed (or Node run) here, or None."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (Debian: apt-get install nodejs npm)"
    return None


def installed(package: str) -> Path:
    """The npm prefix holding `package` ("name@version"), installed into the cache on first use:
    its files are under `prefix / "node_modules" / name`."""
    name = package.rpartition("@")[0]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sse-monitor-tests"
    prefix = cache / package.replace("@", "-").replace("/", "-").lstrip("-")
    if (prefix / "node_modules" / name / "package.json").exists():
        return prefix
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="npm-", dir=cache))
    command = ["npm", "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(staging)]
    done = subprocess.run(
        [*command, package], capture_output=True, text=True, timeout=INSTALL_TIMEOUT
    )
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"npm install {package} failed:\n{done.stderr[-4000:]}")
    try:
        staging.rename(prefix)  # whole, or not at all
    except OSError:  # another test process installed it meanwhile
        shutil.rmtree(staging, ignore_errors=True)
    return prefix
