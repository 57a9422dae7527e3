"""The streamable HTTP server, with limits a slow or greedy client cannot get around.

``await serve_http(server, host, port)`` builds the SDK's Starlette app and runs it under uvicorn
with these limits (:class:`HttpLimits`):

- **Request time.** Each request's head and body must arrive within ``request_timeout_s`` of
  the connection opening, or of the previous response on a kept-alive connection; otherwise
  the connection is closed. uvicorn itself bounds only the idle time between requests, so
  without this a client sending one header line every few seconds holds a connection forever
  (slowloris).
- **Connections.** At most ``max_connections`` open at once, and ``max_connections_per_client``
  from one address; a connection over either limit is closed as soon as it is accepted. The
  total stays below the process's file limit, so the accept loop never hits EMFILE (which
  made asyncio log one traceback per refused accept: 756 MB of stderr in 8 minutes here).
- **Sessions.** Legacy (2025-11-25) clients get stateful sessions: an idle one (no request
  in flight and no open GET stream) is closed after ``session_idle_timeout_s`` instead of the
  SDK's 30 minutes, and at most ``max_sessions`` exist. 2026-07-28 clients are stateless.
- **Logs.** A refused or cut connection is counted, not logged: one summary line per
  ``log_every_s`` says how many and why. Repeated identical warnings from uvicorn, asyncio
  and the SDK are collapsed the same way.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.routing import BaseRoute
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("lumos_mcp.http")

QUIETED_LOGGERS = ("uvicorn.error", "asyncio", "mcp.server.streamable_http_manager", "mcp.server.streamable_http")
_FD_RESERVE = 256
"""File descriptors kept free for the journal, the audit log, telemetry and the SDK."""


@dataclass(frozen=True)
class HttpLimits:
    """How much one client, and all of them together, may hold of the HTTP server."""

    request_timeout_s: float = 10.0
    """Time for a request's head and body to arrive, from connect or from the last response."""
    keep_alive_s: int = 5
    """Idle time between requests on a kept-alive connection (uvicorn's ``timeout_keep_alive``)."""
    max_connections: int = 1000
    """Open connections at once, all clients together (lowered to fit the file limit)."""
    max_connections_per_client: int = 64
    """Open connections from one address."""
    max_header_bytes: int = 16 * 1024
    """Largest request head (h11's ``max_incomplete_event_size``)."""
    session_idle_timeout_s: float = 300.0
    """A legacy session with nothing in flight for this long is closed (the SDK's default is 1800)."""
    max_sessions: int = 1000
    """Legacy sessions open at once (about 43 KB each); more get 503 until one ends or idles out."""
    log_every_s: float = 10.0
    """At most one summary line of refused and cut connections per this many seconds."""


class ConnectionGuard:
    """Counts open connections per client and in total, and what was refused or cut."""

    def __init__(self, limits: HttpLimits, clock: Any = time.monotonic) -> None:
        self.limits = limits
        self.max_connections = min(limits.max_connections, fd_budget())
        self.open: Counter[str] = Counter()
        self.total = 0
        self.events: Counter[str] = Counter()
        """Since the last summary: ``per_client`` / ``total`` refusals and ``timeout`` cuts."""
        self.clients: Counter[str] = Counter()
        self._clock = clock
        self._flush: asyncio.TimerHandle | None = None

    def admit(self, client: str) -> str | None:
        """Count a new connection from ``client``; the limit it would break, or None."""
        if self.total >= self.max_connections:
            return "total"
        if self.open[client] >= self.limits.max_connections_per_client:
            return "per_client"
        self.open[client] += 1
        self.total += 1
        return None

    def release(self, client: str) -> None:
        self.total -= 1
        self.open[client] -= 1
        if self.open[client] <= 0:
            del self.open[client]

    def note(self, event: str, client: str, loop: asyncio.AbstractEventLoop) -> None:
        """Count a refused or cut connection; the summary is logged once per ``log_every_s``."""
        self.events[event] += 1
        self.clients[client] += 1
        if self._flush is None:
            self._flush = loop.call_later(self.limits.log_every_s, self.summarize)

    def summarize(self) -> None:
        self._flush = None
        if not self.events:
            return
        limits = self.limits
        parts = []
        if self.events["per_client"]:
            parts.append(f"{self.events['per_client']} over {limits.max_connections_per_client} per client")
        if self.events["total"]:
            parts.append(f"{self.events['total']} over {self.max_connections} in total")
        if self.events["timeout"]:
            parts.append(f"{self.events['timeout']} cut after {limits.request_timeout_s:g} s without a whole request")
        top = ", ".join(f"{c} ({n})" for c, n in self.clients.most_common(3))
        log.warning(
            "lumos-mcp http: connections refused or cut in the last %gs: %s; from %s",
            limits.log_every_s,
            "; ".join(parts),
            top,
        )
        self.events.clear()
        self.clients.clear()


def fd_budget() -> int:
    """How many connections fit the process's file limit, after raising the soft limit to the hard."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = 65536 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
            soft = max(soft, target)
        except (ValueError, OSError):
            pass
    return max(16, soft - _FD_RESERVE)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the guard's connection limits and a whole-request deadline.

    ``guard`` is set on a subclass made per server (:func:`protocol_class`).
    """

    guard: ConnectionGuard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client = ""
        self._admitted = False
        self._request_timer: asyncio.TimerHandle | None = None
        self._armed_for: object = None  # the cycle that was current when the timer was armed

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peer = transport.get_extra_info("peername")
        self._client = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        refused = self.guard.admit(self._client)
        if refused is not None:
            self.guard.note(refused, self._client, self.loop)
            transport.abort()  # frees the descriptor now; nothing was read
            return
        self._admitted = True
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self._disarm()
        self.guard.release(self._client)
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        cycle = self.cycle
        # A new cycle whose body is complete: the whole request is in, the app has it now.
        if (
            self._request_timer is not None
            and cycle is not None
            and cycle is not self._armed_for
            and not cycle.more_body
        ):
            self._disarm()

    def on_response_complete(self) -> None:
        # Armed before uvicorn looks at a pipelined request, which handle_events then disarms.
        if not self.transport.is_closing():
            self._arm()
        super().on_response_complete()

    def _arm(self) -> None:
        self._disarm()
        self._armed_for = self.cycle
        self._request_timer = self.loop.call_later(self.guard.limits.request_timeout_s, self._request_timed_out)

    def _disarm(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _request_timed_out(self) -> None:
        self._request_timer = None
        if not self.transport.is_closing():
            self.guard.note("timeout", self._client, self.loop)
            self.transport.close()


def protocol_class(guard: ConnectionGuard) -> type[GuardedH11Protocol]:
    """A protocol class bound to ``guard`` (uvicorn builds one protocol per connection)."""
    return type("BoundGuardedH11Protocol", (GuardedH11Protocol,), {"guard": guard})


class RepeatFilter(logging.Filter):
    """Lets each distinct message through once per ``window_s``; the next one that passes
    says how many were held back. Tracebacks of held-back records are dropped with them."""

    def __init__(self, window_s: float = 10.0, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.window_s = window_s
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._held: Counter[tuple[str, str]] = Counter()

    MAX_KEYS = 1024
    """Distinct messages remembered at once (messages that embed an id are all distinct)."""

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self._clock()
        if len(self._last) >= self.MAX_KEYS and key not in self._last:
            self._forget(now)
        last = self._last.get(key)
        if last is not None and now - last < self.window_s:
            self._held[key] += 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like this in the last {self.window_s:g} s not shown)"
        return True

    def _forget(self, now: float) -> None:
        for key in [k for k, t in self._last.items() if now - t >= self.window_s]:
            del self._last[key]
            self._held.pop(key, None)
        if len(self._last) >= self.MAX_KEYS:  # a flood of distinct messages: start over
            self._last.clear()
            self._held.clear()


def quiet_repeats(window_s: float) -> RepeatFilter:
    """Install one :class:`RepeatFilter` on the loggers that speak per connection."""
    repeat = RepeatFilter(window_s)
    for name in QUIETED_LOGGERS:
        logging.getLogger(name).addFilter(repeat)
    return repeat


def build_app(
    server: MCPServer[Any],
    host: str,
    limits: HttpLimits,
    transport_security: TransportSecuritySettings | None = None,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The SDK's streamable HTTP app with the session limits of ``limits``, and ``extra_routes``
    (the operator's ``/metrics`` and ``/console``, which check the token themselves) beside ``/mcp``."""
    app = server.streamable_http_app(
        session_idle_timeout=limits.session_idle_timeout_s,
        max_sessions=limits.max_sessions,
        transport_security=transport_security,
        host=host,
    )
    app.router.routes[0:0] = list(extra_routes)
    return app


def uvicorn_config(app: Starlette, host: str, port: int, limits: HttpLimits, log_level: str = "info") -> uvicorn.Config:
    """uvicorn settings with the guarded protocol; the guard is at ``config.http.guard``."""
    guard = ConnectionGuard(limits)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_class(guard),
        ws="none",
        lifespan="on",
        timeout_keep_alive=limits.keep_alive_s,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        log_level=log_level,
    )


async def serve_http(
    server: MCPServer[Any],
    host: str,
    port: int,
    *,
    limits: HttpLimits | None = None,
    transport_security: TransportSecuritySettings | None = None,
    extra_routes: Sequence[BaseRoute] = (),
) -> None:
    """Serve ``server`` over streamable HTTP on ``host:port`` until uvicorn stops (SIGINT or
    SIGTERM: it shuts down gracefully), within ``limits``."""
    limits = limits or HttpLimits()
    app = build_app(server, host, limits, transport_security, extra_routes)
    config = uvicorn_config(app, host, port, limits, server.settings.log_level.lower())
    quiet_repeats(limits.log_every_s)
    await uvicorn.Server(config).serve()
