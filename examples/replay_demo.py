"""A recorded session to replay: about 40 minutes of an agent's changes under the shipped default
policy, on a fake kernel tree with a simulated clock (nothing on this host is written).

    python examples/replay_demo.py /tmp/lumos-demo-state
    lumos-mcp audit replay --state-dir /tmp/lumos-demo-state
    lumos-mcp audit replay --state-dir /tmp/lumos-demo-state --png replay.png
    lumos-mcp audit replay --state-dir /tmp/lumos-demo-state --policy readonly

The README's replay plot is the ``--png`` of this session.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from lumos_mcp.kernelfs.fake import typical_host
from lumos_mcp.resources import policy_path
from lumos_mcp.service import Service, ServiceConfig


def main(state_dir: Path) -> None:
    now = [1_800_000_000.0]
    with tempfile.TemporaryDirectory() as tree:
        fake = typical_host(Path(tree) / "kernel")
        config = ServiceConfig(
            mode="live",  # "live" on the fake tree: the demo never touches this host
            state_dir=state_dir,
            policy=policy_path("default"),
            host_root=fake.base,
            perf=False,
        )
        service = Service(config, clock=lambda: now[0])
        service.start()
        try:

            def wait(minutes: float) -> None:
                now[0] += minutes * 60
                service.expire_due()

            kept = service.stage({"vm.swappiness": 50}, rationale="major faults while the page cache is warm")
            service.apply(kept.tx.id)
            wait(1.5)
            service.commit(kept.tx.id)
            wait(5)
            lapsed = service.stage({"vm.swappiness": 40}, rationale="try a little less swapping")
            service.apply(lapsed.tx.id)
            wait(3)  # nobody commits: the 2-minute deadline reverts it
            wait(3)
            undone = service.stage({"vm.swappiness": 45})
            service.apply(undone.tx.id)
            wait(1)
            service.revert(undone.tx.id, actor="agent")
            wait(1)
            ratio = service.stage({"vm.dirty_ratio": 16}, rationale="shorter write-back bursts")
            service.apply(ratio.tx.id)
            wait(1.5)
            service.commit(ratio.tx.id)
            wait(6)
            bigger = service.stage({"vm.dirty_ratio": 20}, rationale="p99 write latency rose: give back room")
            approval = service.request_approval(bigger.tx.id)
            service.decide_approval(approval.id, grant=True, by="operator", note="ok for the night batch")
            service.apply(bigger.tx.id)
            wait(1)
            service.commit(bigger.tx.id)
            wait(5)
        finally:
            service.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="lumos-demo-")))
