# Copyright: lumos-mcp contributors
# MIT License
"""An Ansible callback that writes one JSON line per task result: host, task, wall seconds from
the task's start on that host, and ``lumos_call_s`` (the module's time in calls to its server).
Enabled by the fleet benchmark (benchmarks/bench_fleet.py) with $LUMOS_TIMING_LOG as the output."""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: lumos_timing
type: aggregate
short_description: per task and host wall time and lumos-mcp call time, as JSON lines
description: Writes to the file named by LUMOS_TIMING_LOG.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "lumos_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._path = os.environ.get("LUMOS_TIMING_LOG", "lumos-timing.jsonl")
        self._started: dict[tuple[str, str], float] = {}

    def v2_runner_on_start(self, host, task):  # type: ignore[no-untyped-def]
        self._started[(host.get_name(), task._uuid)] = time.monotonic()

    def _record(self, result, status):  # type: ignore[no-untyped-def]
        key = (result._host.get_name(), result._task._uuid)
        start = self._started.pop(key, None)
        line = {
            "host": key[0],
            "task": result._task.get_name(),
            "action": result._task.action,
            "status": status,
            "wall_s": None if start is None else round(time.monotonic() - start, 4),
            "lumos_call_s": result._result.get("lumos_call_s"),
            "t": time.time(),
        }
        with open(self._path, "a") as f:
            f.write(json.dumps(line) + "\n")

    def v2_runner_on_ok(self, result):  # type: ignore[no-untyped-def]
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):  # type: ignore[no-untyped-def]
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result):  # type: ignore[no-untyped-def]
        self._record(result, "skipped")
