"""`sse-monitor serve` runs the gateway (one process, or `--workers N` on one port);
`sse-monitor demo` runs it against a simulated KATO."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

import structlog
import uvicorn

from sse_monitor.redact import redact_url
from sse_monitor.settings import ENVIRONMENT, ConfigError, Settings

log = structlog.get_logger("sse_monitor.cli")

# uvicorn waits for open responses before it stops, and SSE responses never end by themselves:
# streams are ended on SIGTERM (sse-starlette watches for it), and this is the backstop.
GRACEFUL_SHUTDOWN_SECONDS = 1.5
MAX_WORKERS = 64
# What each worker of `serve --workers N` runs: it reads its settings from the environment,
# where the parent has written the CLI's flags (environment_of).
WORKER_APP = "sse_monitor.app:app_from_env"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {
        "kato_url": getattr(args, "kato_url", None),
        "poll_interval": getattr(args, "interval", None),
    }
    try:
        settings = Settings.from_env().with_overrides(**overrides)
        if args.command == "serve":
            check_workers(settings, args.workers)
    except ConfigError as exc:
        print(f"sse-monitor: configuration error: {exc}", file=sys.stderr)
        return 2
    # The app is imported once the settings are known good: a bad one stops start-up without
    # first importing all of it (most of a second of CPU).
    from sse_monitor.app import set_up_process

    set_up_process(settings)
    try:
        if args.command == "serve":
            return _serve(settings, args.host, args.port, args.workers, overrides)
        if args.command == "demo":
            return asyncio.run(_demo(settings, args.host, args.port, args.kato_port))
    except ConfigError as exc:  # the alert rules, read when the app is built
        print(f"sse-monitor: configuration error: {exc}", file=sys.stderr)
        return 2
    session_backend = args.session_backend or ("redis" if args.redis_url else "memory")
    if args.redis_url and session_backend != "redis":
        print("sse-monitor: --redis-url needs --session-backend redis", file=sys.stderr)
        return 2
    return asyncio.run(
        _simulator(
            args.host,
            args.port,
            activity=not args.quiet,
            session_backend=session_backend,
            redis_url=args.redis_url,
        )
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sse-monitor", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    default_port = int(os.environ.get("PORT", "8080"))

    serve = commands.add_parser("serve", help="run the gateway against KATO (KATO_URL)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=default_port)
    serve.add_argument("--kato-url", help="KATO's base URL (overrides KATO_URL)")
    serve.add_argument("--interval", type=float, help="seconds between polls")
    serve.add_argument(
        "--workers",
        type=worker_count,
        default=1,
        help=f"gateway processes sharing the port (1 to {MAX_WORKERS}; more than 1 needs "
        "SSE_MONITOR_REDIS_URL)",
    )

    demo = commands.add_parser("demo", help="run the gateway against a built-in simulated KATO")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=default_port)
    demo.add_argument("--kato-port", type=int, default=0, help="simulated KATO's port (0: any)")
    demo.add_argument("--interval", type=float, help="seconds between polls")

    simulator = commands.add_parser("simulator", help="run only the simulated KATO")
    simulator.add_argument("--host", default="127.0.0.1")
    simulator.add_argument("--port", type=int, default=8000)
    simulator.add_argument("--quiet", action="store_true", help="no random session activity")
    simulator.add_argument(
        "--session-backend",
        choices=("memory", "redis"),
        help="KATO's session backend to mimic; redis pushes session events on /ws/events and "
        "never lowers the count on expiry (default: memory, or redis with --redis-url)",
    )
    simulator.add_argument(
        "--redis-url",
        help="also write the sessions into this Redis in KATO's layout (implies redis)",
    )
    return parser


def worker_count(raw: str) -> int:
    """`--workers`: a whole number from 1 to MAX_WORKERS."""
    try:
        count = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if not 1 <= count <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"{count} is out of range (1 to {MAX_WORKERS})")
    return count


def check_workers(settings: Settings, workers: int) -> None:
    """Several workers only share one event log, one producer and one KATO poll through Redis."""
    if workers > 1 and not settings.clustered:
        raise ConfigError(
            f"--workers {workers} needs SSE_MONITOR_REDIS_URL: without it each process would "
            "poll KATO and keep its own history"
        )


LISTEN_BACKLOG = 4096


def environment_of(changes: dict[str, object]) -> dict[str, str]:
    """The environment variables that say these settings (the CLI's flags, None for unset):
    how the flags reach worker processes, which read their settings from the environment."""
    names = {attr: name for name, (attr, _) in ENVIRONMENT.items()}
    return {names[attr]: str(value) for attr, value in changes.items() if value is not None}


def _uvicorn_options(access_log: bool = True) -> dict[str, Any]:
    """uvicorn's settings for every server of ours, in one process or in workers."""
    return {
        "log_config": None,  # logging is ours (structlog), set up before this
        "access_log": access_log,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        # X-Forwarded-For is ours to read, and only from SSE_MONITOR_TRUSTED_PROXIES: uvicorn
        # would otherwise take it from any client on 127.0.0.1 (its default).
        "proxy_headers": False,
        # The clients of a lost node come back within their `retry:`, thousands at once: the
        # queue for them (uvicorn's default is 2048; the kernel caps it at somaxconn).
        "backlog": LISTEN_BACKLOG,
    }


def _uvicorn_config(
    app: object, host: str, port: int, *, access_log: bool = True
) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, **_uvicorn_options(access_log))  # type: ignore[arg-type]


def _serve(
    settings: Settings, host: str, port: int, workers: int, overrides: dict[str, object]
) -> int:
    from sse_monitor.app import create_app

    app = create_app(settings)  # with workers too: a bad setting stops start-up here, once
    log.info(
        "gateway.listening",
        url=f"http://{host}:{port}/",
        stream=f"curl -N http://{host}:{port}/events",
        kato_url=redact_url(settings.kato_url),
        workers=workers,
        hint="set KATO_URL or --kato-url to point at KATO; `sse-monitor demo` runs a simulated one",
    )
    if workers == 1:
        uvicorn.Server(_uvicorn_config(app, host, port)).run()
        return 0
    # uvicorn's supervisor binds the port, starts the workers (each builds its own app), starts
    # a new one for any that dies, and on SIGTERM or SIGINT stops them all.
    os.environ.update(environment_of(overrides))
    uvicorn.run(
        WORKER_APP, host=host, port=port, workers=workers, factory=True, **_uvicorn_options()
    )
    return 0


async def _start_simulator(
    host: str,
    port: int,
    *,
    activity: bool,
    session_backend: str = "memory",
    redis_url: str | None = None,
) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    from sse_monitor.simulator.app import create_simulator_app
    from sse_monitor.simulator.state import SimulatedKato

    kato = SimulatedKato(session_backend=session_backend, redis_url=redis_url)
    app = create_simulator_app(kato, activity=activity)
    server = uvicorn.Server(_uvicorn_config(app, host, port, access_log=False))
    task = asyncio.create_task(server.serve(), name="simulated-kato")
    while not server.started:
        if task.done():
            task.result()  # raises the reason it could not start
            raise SystemExit(f"the simulated KATO could not listen on {host}:{port}")
        await asyncio.sleep(0.05)
    return server, task


async def _simulator(
    host: str, port: int, *, activity: bool, session_backend: str, redis_url: str | None
) -> int:
    _, task = await _start_simulator(
        host, port, activity=activity, session_backend=session_backend, redis_url=redis_url
    )
    await task
    return 0


async def _demo(settings: Settings, host: str, port: int, kato_port: int) -> int:
    from sse_monitor.app import create_app

    # KATO's Redis session mode (kept in memory here): its changes are pushed on /ws/events,
    # so the demo shows both channels, pushed sessions with their ids and the poll's corrections.
    simulator, simulator_task = await _start_simulator(
        host, kato_port, activity=True, session_backend="redis"
    )
    bound_port = simulator.servers[0].sockets[0].getsockname()[1]
    settings = settings.with_overrides(kato_url=f"http://{host}:{bound_port}")
    log.info(
        "demo.ready",
        page=f"http://{host}:{port}/",
        stream=f"curl -N http://{host}:{port}/events",
        simulated_kato=settings.kato_url,
        real_kato="KATO_URL=http://<kato-host>:8000 sse-monitor serve",
    )
    gateway = uvicorn.Server(_uvicorn_config(create_app(settings), host, port))
    try:
        await gateway.serve()
    finally:
        simulator.should_exit = True
        await simulator_task
    return 0


if __name__ == "__main__":
    sys.exit(main())
