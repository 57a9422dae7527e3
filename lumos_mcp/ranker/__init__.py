"""Zero-mod ranker: which of two configurations' windows was better, from counters alone.

What the server needs lives here: signatures -> fixed feature vectors (`features`), pairwise
features, archetypes by PCA + k-means with Mahalanobis gating and a global fallback, and a
margin rule (`model`, `rules`), and the dataset format the model trains on (`dataset`).
What only the lab needs (the data generator on arena workloads, held-out evaluation against
single-counter proxies, the counters-only arena strategy) is in `lumos_mcp.arena.ranker_lab`,
which imports this package and never the other way round.
"""
