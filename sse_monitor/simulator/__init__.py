"""A simulated KATO: a real Starlette app that speaks KATO's HTTP API, quirks included.

KATO is not installable in CI, so the tests and `sse-monitor demo` talk to this stand-in. It
reproduces what the gateway has to cope with (the facts in the project's shared KATO notes):
several workers answering from their own counters and their own 5 s caches, `/metrics` failing
with HTTP 200, its fallback zeros, two different 404 bodies, FastAPI-style 405/422 bodies, a
`/status` that leaks the Redis password.

With `session_backend="redis"` it also behaves as KATO on its Redis session backend: sessions
created or deleted over HTTP are pushed on `/ws/events` to the sockets of the worker that served
the request (only those), a session that expires by TTL is announced nowhere and stays counted,
and with a `redis_url` every session is written to that real Redis in KATO's key layout.

Routes under `/_sim/` are not KATO's: they let tests inject faults, pin figures and read counters.
A request may name the worker that serves it with the `X-Sim-Worker: <index>` header.

| Module | Its one job |
|---|---|
| `app.py` | `create_simulator_app`: the route table, middleware, lifespan, the activity loop |
| `state.py` | `SimulatedKato`: the pieces below, and a session change's effects in KATO's order |
| `sessions.py` | the sessions all workers share: TTLs, sliding, KATO's active index |
| `workers.py` | KATO's workers: their own counters, uptime and caches, taken in turn |
| `resources.py` | the whole-machine figures: a random walk, pins, the CPU warm-up |
| `activity.py` | the demo's sessions, created and destroyed at random |
| `answers.py` | the bodies of `/health`, `/metrics`, `/sessions/count` and `/status` |
| `faults.py` | what `/health` and `/metrics` do instead: fault modes, canned answers |
| `push.py` | `/ws/events`: per-worker outboxes, KATO's events, the socket's two loops |
| `redis_layout.py` | KATO's session keys in a real Redis, written as KATO writes them |
| `endpoints.py` | KATO's HTTP and WebSocket endpoints |
| `validation.py` | `POST /sessions` bodies checked as FastAPI would, with its 422 details |
| `middleware.py` | KATO's middleware: trace ids, worker choice, the session check |
| `control.py` | the `/_sim/` endpoints tests drive it with |
"""
