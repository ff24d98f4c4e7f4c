"""Notification receivers as end-to-end tests set them up: each a `[[receiver]]` of the rules
file with its `[[route]]`, and the loopback server (a RecordingReceiver) it posts to."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.alert_rules import rule_table
from tests.support.notify_receiver import RecordingReceiver
from tests.support.servers import ThreadedServer

SECRET = "webhook-signing-secret-7c1e"


@dataclass
class Hook:
    """A receiver of the rules file and the loopback server it posts to; its route takes the
    alerts of `rules` (rule ids), or every alert, and gathers them for `group_wait` (or the
    file's)."""

    name: str
    kind: str
    receiver: RecordingReceiver
    server: ThreadedServer
    secret: str | None = None
    rules: tuple[str, ...] = ()
    group_wait: str | None = None

    @property
    def url(self) -> str:
        return f"{self.server.url}/hook/{self.name}"

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.receiver.received if r.status == 200]


def new_hook(
    name: str,
    kind: str = "webhook",
    receiver: RecordingReceiver | None = None,
    *,
    secret: str | None = None,
    rules: Sequence[str] = (),
    group_wait: str | None = None,
) -> Hook:
    """A hook whose server is not started yet (`serving` starts it)."""
    receiver = receiver or RecordingReceiver()
    server = ThreadedServer(receiver.app)
    return Hook(name, kind, receiver, server, secret, tuple(rules), group_wait)


@contextmanager
def serving(*wanted: Hook) -> Iterator[list[Hook]]:
    """The hooks with their servers running, stopped at the end."""
    started: list[Hook] = []
    try:
        for hook in wanted:
            hook.server.start()
            started.append(hook)
        yield started
    finally:
        for hook in started:
            hook.server.stop()


@contextmanager
def hooks(*kinds: str) -> Iterator[list[Hook]]:
    """A running receiver of each kind, named `<kind>-hook`; the webhook's requests are signed."""
    wanted = [
        new_hook(f"{kind}-hook", kind, secret=SECRET if kind == "webhook" else None)
        for kind in kinds
    ]
    with serving(*wanted) as made:
        yield made


def rules_file(
    path: Path, rules: str, hooks: Sequence[Hook], *, group_wait: str = "0s"
) -> dict[str, str]:
    """The rules and a receiver and a route for each hook; the gateway's environment for it."""
    text = rules
    for hook in hooks:
        fields: dict[str, str | float | list[str]] = {
            "name": hook.name,
            "kind": hook.kind,
            "url": hook.url,
        }
        if hook.secret:
            fields["secret"] = hook.secret
        text += rule_table(**fields).replace("[[rule]]", "[[receiver]]")
        route: dict[str, str | float | list[str]] = {"receiver": hook.name}
        if hook.rules:
            route["rules"] = list(hook.rules)
        route["group_wait"] = hook.group_wait or group_wait
        text += rule_table(**route).replace("[[rule]]", "[[route]]")
    path.write_text(text)
    return {"SSE_MONITOR_ALERT_RULES": str(path)}
