"""The benchmark's figures are measured on the real code paths (their values are printed by `recloss-lite bench`,
not asserted: the machines are too noisy for timed tests)."""

from __future__ import annotations

import math

import torch


def test_bench_hdccf_step(ml100k):
    from recloss_lite.experiments import benchmark

    torch.set_num_threads(1)
    seconds = benchmark.hdccf_batch_seconds(ml100k, modulation=False, batches=3, batch_size=64)
    assert math.isfinite(seconds) and seconds >= 0  # a time, measured (not compared with a bound: noisy machines)
