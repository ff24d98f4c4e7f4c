"""The publisher for nchan in bench/fanout.py: the gateway's tick, POSTed to an nchan channel.

Every interval (fixed rate, like the gateway's poller) it polls the simulated KATO and builds
the `metrics` data exactly as bench/naive_server.py does (the gateway's fields and size, with
`timestamp` = publish time), encodes it once and POSTs it to nchan's publisher location, which
fans it out to every EventSource subscriber. So the load client measures publish to arrival the
same way for every server. Its own CPU is not the server's: it is what the gateway spends in its
poller, once per tick whatever the number of clients.

    python bench/nchan_publisher.py --pub-url http://127.0.0.1:18080/pub \
        --kato-url http://127.0.0.1:8000 --interval 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys

import httpx
from naive_server import Hub, fixed_rate


async def publish(pub_url: str, kato_url: str, interval: float) -> None:
    hub = Hub(kato_url, interval)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    async with httpx.AsyncClient(timeout=min(interval * 0.8, 10.0)) as http:
        try:
            async for _ in fixed_rate(interval):
                payload = await hub.poll()
                body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
                try:
                    response = await http.post(pub_url, content=body, headers=headers)
                except httpx.HTTPError as exc:  # logged: the orchestrator reports log lines
                    print(f"publish failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                    continue
                if response.status_code not in (201, 202):  # created / queued, no subscriber
                    print(f"publish answered {response.status_code}", file=sys.stderr)
        finally:
            await hub.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pub-url", required=True, help="nchan's publisher location")
    parser.add_argument("--kato-url", default="http://127.0.0.1:8000")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between events")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(publish(args.pub_url, args.kato_url, args.interval))


if __name__ == "__main__":
    main()
