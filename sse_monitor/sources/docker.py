"""Talk to the Docker engine through the docker SDK: list, inspect, stats and events.

The SDK is synchronous: every method of `DockerEngine` blocks and is meant to run in a worker
thread, never on the event loop. Its answers become figures in docker_figures.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import docker
import docker.errors
import requests.exceptions
import urllib3.exceptions

from sse_monitor.redact import scrub
from sse_monitor.sources.docker_figures import container_name, mapping


class EngineUnavailable(Exception):
    """The engine cannot be reached: no socket, permission denied, stopped, or failing."""


@dataclass(frozen=True, slots=True)
class Selection:
    """Which containers to watch: some names, those with a label, or all of them."""

    names: tuple[str, ...] = ()
    label: str | None = None

    @property
    def everything(self) -> bool:
        return not self.names and self.label is None

    def matches(self, name: str, labels: Mapping[str, str]) -> bool:
        if self.label is not None:
            key, _, value = self.label.partition("=")
            return key in labels and (not value or labels[key] == value)
        return self.everything or name in self.names


class DockerEngine:
    """One SDK client, created on first use and again after the engine has failed."""

    def __init__(self, *, base_url: str | None = None, timeout: float = 5.0) -> None:
        self._base_url = base_url
        self._timeout = timeout
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()

    def containers(self, selection: Selection) -> list[dict[str, Any]]:
        """The engine's list entries (running or not) of the selected containers."""
        filters = {"label": selection.label} if selection.label else None
        entries = self._call(lambda api: api.containers(all=True, filters=filters))
        if not isinstance(entries, list):
            return []
        return [
            entry
            for entry in entries
            if isinstance(entry, Mapping)
            and isinstance(entry.get("Id"), str)
            and selection.matches(container_name(entry), mapping(entry.get("Labels")))
        ]

    def inspect(self, container_id: str) -> dict[str, Any]:
        return self._call(lambda api: api.inspect_container(container_id))

    def stats(self, container_id: str) -> dict[str, Any]:
        """One sample, without the engine's second sampling pass (API 1.41+)."""
        return self._call(lambda api: api.stats(container_id, stream=False, one_shot=True))

    def events(self, since: datetime | None) -> Any:
        """The engine's container events as a blocking iterator with a close() method."""
        return self._call(
            lambda api: api.events(since=since, filters={"type": "container"}, decode=True)
        )

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _call(self, operation: Any) -> Any:
        try:
            return operation(self._api())
        except docker.errors.APIError as exc:
            if exc.status_code is not None and exc.status_code < 500:
                raise  # about one container (gone, not running): the engine is fine
            self.close()
            raise EngineUnavailable(engine_error(exc)) from None
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            self.close()  # a fresh client next time: the engine may have restarted
            raise EngineUnavailable(engine_error(exc)) from None
        except OSError as exc:
            self.close()
            raise EngineUnavailable(engine_error(exc)) from None

    def _api(self) -> docker.APIClient:
        with self._lock:
            if self._client is None:
                if self._base_url:
                    self._client = docker.DockerClient(
                        base_url=self._base_url, timeout=self._timeout, version="auto"
                    )
                else:
                    self._client = docker.from_env(timeout=self._timeout, version="auto")
            return self._client.api


def engine_error(exc: BaseException) -> str:
    """A short reason an operator can act on, from the SDK's long exception texts."""
    text = str(exc)
    lowered = text.lower()
    if "permission denied" in lowered:
        reason = "permission denied on the Docker socket"
    elif "no such file" in lowered or "filenotfound" in lowered:
        reason = "no Docker socket (is the engine running? is DOCKER_HOST right?)"
    elif "connection refused" in lowered or "connection aborted" in lowered:
        reason = "the Docker engine refused the connection"
    elif "timed out" in lowered or "timeout" in lowered:
        reason = "the Docker engine did not answer in time"
    else:
        reason = f"{type(exc).__name__}: {text[:200]}"
    return scrub(reason)


def iter_events(stream: Any) -> Iterator[dict[str, Any]]:
    """Events from an SDK events stream; ends quietly when the connection goes away (the
    engine stopped, or the stream was closed under it)."""
    try:
        yield from stream
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError):
        return
