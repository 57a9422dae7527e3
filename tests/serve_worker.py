"""A real ``serve`` process for tests/test_lifecycle.py: live mode over a fake kernel tree.

    python serve_worker.py DIR CONFIRM_S

``DIR`` holds ``kernel/`` (a fake tree the test built), ``policy.toml`` and ``state/``. The
worker starts the service with its watchdog (as ``lumos-mcp serve`` does), applies
``vm.swappiness`` = 30 with a deadline of ``CONFIRM_S`` seconds, then serves MCP over stdio
through the very lifecycle ``serve`` uses, until stdin ends or a signal stops it. Once it
handles the stop signals it writes ``DIR/ready.json`` (its pid, the watchdog's pid, the deadline).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the worktree, whatever the cwd

from lumos_mcp.server import build_server
from lumos_mcp.service import Service, ServiceConfig
from lumos_mcp.serving import describe, run_until_stopped

CHANGE = {"vm.swappiness": 30}


def config(directory: Path) -> ServiceConfig:
    return ServiceConfig(
        mode="live",
        state_dir=directory / "state",
        policy=directory / "policy.toml",
        host_root=directory / "kernel",
        telemetry_root=Path("/"),
        perf=False,
    )


def main(directory: Path, confirm_s: float) -> int:
    service = Service(replace(config(directory), watchdog=True))
    service.start()
    staged = service.stage(CHANGE, confirm_within_s=confirm_s)
    tx = service.apply(staged.tx.id)
    info = {"pid": os.getpid(), "watchdog_pid": service.watchdog_pid, "deadline": tx.deadline, "tx": tx.id}

    def ready() -> None:  # signals are handled from here on
        tmp = directory / "ready.json.tmp"
        tmp.write_text(json.dumps(info))
        tmp.replace(directory / "ready.json")

    server = build_server(service)
    return run_until_stopped(service, server.run_stdio_async, describe(service, "stdio"), ready)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), float(sys.argv[2])))
