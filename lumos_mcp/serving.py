"""How ``serve`` starts and stops: every way out reverts what is armed and leaves committed alone.

* stdin EOF (how every stdio host ends its server), an unhandled error: the transport returns
  or raises, and the ``finally`` below reverts every armed change (`Service.shutdown`) before
  the state directory is released.
* SIGINT (Ctrl-C), SIGTERM: a signal receiver reverts every armed change at once, then cancels
  the transport (HTTP: uvicorn sees the signal too and is first given time to shut down
  gracefully). On stdio the SDK reads stdin in a worker thread that no cancellation can
  interrupt (a terminal's Ctrl-C would otherwise wait for Ctrl-D), so when the transport has not
  returned within ``STOP_GRACE_S`` the process closes the service and exits by itself: nothing
  is left to do by then (the server's own lifespan has already stopped telemetry and the
  deadline loop).
* SIGKILL and anything else no handler sees: the watchdog (`lumos_mcp.watchdog`).

Nobody is left to commit an armed change once the server stops, so it is reverted at once,
not at its deadline: that is what the next start's recovery would do anyway.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator

import anyio

from lumos_mcp.service import Service

STOP_GRACE_S = 1.0
STOP_SELF_S = 5.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def describe(service: Service, transport: str) -> str:
    """One line for stderr: what this server serves and how to stop it."""
    return (
        f"lumos-mcp: serving MCP over {transport} in {service.mode} mode, policy {service.policy.name} "
        f"({service.policy_file}), state {service.state_dir}; stop with Ctrl-C or SIGTERM "
        "(changes not committed by then are reverted)"
    )


def run_until_stopped(
    service: Service,
    serve: Callable[[], Awaitable[None]],
    banner: str,
    ready: Callable[[], None] | None = None,
    stops_itself: bool = False,
) -> int:
    """Run ``serve`` (a started service's transport) until it returns or SIGINT/SIGTERM
    arrives; revert whatever is armed; close the service. Returns the exit code.

    ``banner`` goes to stderr, and ``ready`` (if any) is called, once the stop signals are
    handled here. ``stops_itself``: the transport also handles the signals and shuts down
    gracefully (uvicorn does): after the revert it gets ``STOP_SELF_S`` to do so before it
    is cancelled."""
    timers: list[threading.Timer] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:

            async def transport() -> None:
                await serve()
                tg.cancel_scope.cancel()

            tg.start_soon(transport)
            # the receiver stays open while stopping: a second signal is swallowed, not fatal
            with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
                print(banner, file=sys.stderr, flush=True)
                if ready is not None:
                    ready()
                async for signum in signals:
                    name = signal.Signals(signum).name
                    print(f"lumos-mcp: {name}: stopping", file=sys.stderr, flush=True)
                    await anyio.to_thread.run_sync(_stop, service, "server_exit")
                    if stops_itself:
                        await anyio.sleep(STOP_SELF_S)  # cancelled as soon as the transport returns
                    timers.append(_exit_if_stuck(service))
                    tg.cancel_scope.cancel()
                    break

    try:
        anyio.run(main)
    except BaseExceptionGroup as group:  # the task group wraps the transport's one error: show it plainly
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        with _signals_ignored():  # a second Ctrl-C must not cut the revert short
            for timer in timers:
                timer.cancel()
            _stop(service, "server_exit")
            service.close()
    return 0


def _stop(service: Service, reason: str) -> None:
    reverted = service.shutdown(reason)
    if reverted:
        names = ", ".join(tx.id for tx in reverted)
        print(
            f"lumos-mcp: reverted {len(reverted)} uncommitted change(s) on exit: {names}", file=sys.stderr, flush=True
        )


def _exit_if_stuck(service: Service) -> threading.Timer:
    """After the revert, give the transport ``STOP_GRACE_S`` to unwind, then leave anyway."""

    def leave() -> None:
        service.close()
        sys.stderr.flush()
        os._exit(0)

    timer = threading.Timer(STOP_GRACE_S, leave)
    timer.daemon = True
    timer.start()
    return timer


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
