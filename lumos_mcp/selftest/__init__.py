"""The reliability and security self-test: crashes, storage faults, fuzzed input, concurrent
clients and intruders, each counted, so ``lumos-mcp selftest`` can print one table of figures.

Every part has a short form (run by the test suite) and a long form (``--long``). The parts
only use public surfaces: a ``Service`` over a fake kernel tree, the MCP client in memory,
and a real ``lumos-mcp serve --http`` process on loopback.
"""

from __future__ import annotations

__all__ = ["common", "concurrency", "crash", "fuzz", "intruders", "report", "storage"]
