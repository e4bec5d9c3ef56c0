"""The interval behind every A/B serving figure: pairs of servers, then passes within them."""

from __future__ import annotations

import numpy as np

from benchmarks.drift_serving import geometric_mean_interval


def test_instance_differences_widen_the_interval_and_a_steady_cost_is_found() -> None:
    rng = np.random.default_rng(0)
    instance = np.repeat(rng.normal(0, 0.06, size=4), 8)  # 4 server pairs x 8 passes
    passes = rng.normal(0, 0.02, size=32)
    clustered = np.exp(-0.05 + instance + passes).tolist()
    steady = np.exp(-0.05 + passes).tolist()
    wide = geometric_mean_interval(clustered, rounds=4)
    narrow = geometric_mean_interval(steady, rounds=4)
    assert wide["ci95_high"] - wide["ci95_low"] > 2 * (narrow["ci95_high"] - narrow["ci95_low"])
    assert narrow["ci95_low"] > 0.93 and narrow["ci95_high"] < 0.97, "a steady 5% cost is resolved"
    assert narrow["geometric_mean"] == np.round(np.exp(np.mean(np.log(steady))), 3)
    assert wide["server_pairs"] == 4 and wide["pairs"] == 32
