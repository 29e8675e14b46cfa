"""``recloss-lite bench``: the speed figures of the foundation, measured and printed (chapter 07_training).

* ``bpr_epoch_s``: one MF-BPR epoch over the whole training set (1 uniform negative per positive, batch 2048).
* ``shared800_epoch_s``: one epoch with 800 negatives shared by each batch (InfoNCE, cosine, batch 2048).
* ``eval_s``: full-ranking evaluation (Recall/NDCG@20) of every test user.
* ``ials_iter_s``: one iALS iteration (users then items, 64 factors), when :mod:`recloss_lite.core.linear` provides it.
* ``hdccf_batch_s`` / ``hdccf_modulated_batch_s``: one HDCCF training step (sampling with its masks, loss,
  backward, optimiser) at the CLI preset (M = 256, P = 2), without and with the modulated similarity.

``kernels`` says whether the compiled kernels of :mod:`recloss_lite.core.kernels` ran (the default where a C compiler is
found) or the PyTorch fallback did. Each figure is the median of ``repeats`` timed runs after one warm-up; the
machine's thread count is printed with them, because the targets (1.0 s, 15 s, 6 s on two cores) depend on it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from ..core import data, hdccf, kernels, linear, losses, metrics
from ..core.models import MF
from ..core.training import RowAdam, TrainConfig, config_sampler, epoch_generator, interaction_pairs, train_epoch


def _median_seconds(run: Callable[[], object], repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def epoch_seconds(dataset: data.Dataset, config: TrainConfig, repeats: int = 3) -> float:
    """Median wall time of one training epoch of MF on ``dataset.train`` with ``config``."""
    users, items = interaction_pairs(dataset.train)
    model = MF(dataset.n_users, dataset.n_items, config.dim, config.similarity, seed=config.seed).to(config.device)
    optimizer = RowAdam(model.weight, config.lr)
    loss_fn = losses.make(config.loss, **config.loss_params)
    sampler = config_sampler(dataset.train, config)
    counter = iter(range(1, 10_000))
    return _median_seconds(lambda: train_epoch(model, optimizer, loss_fn, sampler, users, items, config,
                                               epoch_generator(config.seed, next(counter))), repeats)


def hdccf_batch_seconds(dataset: data.Dataset, modulation: bool, batches: int = 20, batch_size: int = 256,
                        num_positives: int = 2) -> float:
    """Seconds per HDCCF training step on ``dataset.train``: (time of 1 + ``batches`` steps - time of 1 step) /
    ``batches``, so the one-off set-up of the sampler (membership tables) is not counted."""
    def steps(count: int) -> float:
        model = hdccf.HDCCF(dataset.n_users, dataset.n_items, tau=0.5, num_positives=num_positives,
                            modulation=modulation)
        start = time.perf_counter()
        hdccf.fit_hdccf(model, dataset.train, epochs=1, batch_size=batch_size, max_batches=count)
        return time.perf_counter() - start

    return max(steps(1 + batches) - steps(1), 0.0) / batches


def run_benchmarks(name: str = "gowalla", repeats: int = 3, device: str = "cpu", progress: bool = True) -> dict:
    """Measure every figure on data set ``name``; print each as it is measured when ``progress``."""
    dataset = data.load(name)
    figures: dict[str, float | int | str] = {"dataset": name, "threads": torch.get_num_threads(),
                                             "device": device, "repeats": repeats,
                                             "kernels": "compiled" if kernels.library() else "pytorch"}
    if progress:
        print(f"{'kernels':>18}: {figures['kernels']} (RECLOSS_KERNELS=0 forces the PyTorch path)", flush=True)

    def report(key: str, value: float) -> None:
        figures[key] = round(value, 4)
        if progress:
            print(f"{key:>18}: {value:8.3f} s", flush=True)

    bpr = TrainConfig(dataset=name, loss="bpr", batch_size=2048, num_negatives=1, device=device)
    report("bpr_epoch_s", epoch_seconds(dataset, bpr, repeats))
    shared = TrainConfig(dataset=name, loss="infonce", similarity="cosine", batch_size=2048, num_negatives=800,
                         shared_negatives=True, device=device)
    report("shared800_epoch_s", epoch_seconds(dataset, shared, repeats))
    model = MF(dataset.n_users, dataset.n_items, 64).to(device)
    report("eval_s", _median_seconds(lambda: metrics.evaluate(lambda u: model.scores(u.to(device)).cpu(),
                                                              dataset.train, dataset.test), repeats))
    report("ials_iter_s", linear.bench_ials(dataset, factors=64, iterations=repeats)["seconds_per_iteration"])
    report("hdccf_batch_s", hdccf_batch_seconds(dataset, modulation=False))
    report("hdccf_modulated_batch_s", hdccf_batch_seconds(dataset, modulation=True, batches=4))
    return figures
