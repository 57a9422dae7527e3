"""Zero-mod ranker: which of two configurations' windows was better, from counters alone.

Signatures -> fixed feature vectors (`features`), pairwise features, archetypes by PCA +
k-means with Mahalanobis gating and a global fallback, and a margin rule (`model`); the
dataset and its generator on arena workloads (`dataset`, `generate`); held-out evaluation
against single-counter proxies (`evaluate`); a counters-only arena strategy (`strategy`).
"""
