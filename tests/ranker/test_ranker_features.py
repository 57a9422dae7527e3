from __future__ import annotations

import json
import math

import numpy as np

from lumos_mcp.ranker.features import feature_names, flat_signature, pair_features, vector
from tests.ranker.ranker_helpers import SIGNATURE


def test_a_recorded_signature_becomes_the_fixed_vector() -> None:
    sig = json.loads(SIGNATURE.read_text())
    names = feature_names()
    v = vector(sig)
    assert v.shape == (len(names),)
    assert v[names.index("sched.ctx_switches_per_s")] == sig["sched"]["ctx_switches_per_s"]
    assert v[names.index("psi.cpu.some.window_pct")] == sig["psi"]["cpu"]["some"]["window_pct"]
    assert math.isnan(v[names.index("perf.ipc")])  # no hardware counters on the reference host
    cores = [c["util_pct"] for c in sig["cpu"]["per_core"]]
    assert v[names.index("cpu.core_util_max_pct")] == max(cores)


def test_nested_and_flat_signatures_give_the_same_vector() -> None:
    sig = json.loads(SIGNATURE.read_text())
    assert np.array_equal(vector(sig), vector(flat_signature(sig)), equal_nan=True)


def test_cgroup_features_follow_the_roles() -> None:
    flat = {"cgroups.svc/web.cpu_usage_cores": 0.7, "sched.ctx_switches_per_s": 10.0}
    names = feature_names()
    v = vector(flat, roles={"app": "svc/web"})
    assert v[names.index("cgroup.app.cpu_usage_cores")] == 0.7
    assert math.isnan(v[names.index("cgroup.other.cpu_usage_cores")])
    assert len(vector(flat, with_cgroups=False)) == len(feature_names(with_cgroups=False))


def test_pair_features_are_antisymmetric_differences_and_ratios_plus_a_symmetric_level() -> None:
    a = np.array([[1.0, 100.0]])
    b = np.array([[3.0, 10.0]])
    scale = np.array([2.0, 1.0])
    ab, ba = pair_features(a, b, scale), pair_features(b, a, scale)
    assert np.allclose(ab[:, :4], -ba[:, :4])
    assert np.allclose(ab[:, 4:], ba[:, 4:])
    assert ab[0, 0] == -1.0
