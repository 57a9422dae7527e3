"""The ranker's lab: what only experiments need, apart from what the server loads.

- `generate`: training data from arena workloads on this host (``python -m
  lumos_mcp.arena.ranker_lab.generate``; root, live writes through a `Service`);
- `evaluate`: held-out evaluation against single-counter proxies (``python -m
  lumos_mcp.arena.ranker_lab evaluate``);
- `strategy`: the counters-only arena strategy `RankerStrategy`.

Imports point one way: this package uses `lumos_mcp.ranker` (features, model, rules, dataset);
`lumos_mcp.ranker` never imports the arena.
"""
