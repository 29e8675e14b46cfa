"""``recloss-lite bench``: the speed figures of the foundation, measured and printed (chapter 07_training).

* ``bpr_epoch_s``: one MF-BPR epoch over the whole training set (1 uniform negative per positive, batch 2048).
* ``shared800_epoch_s``: one epoch with 800 negatives shared by each batch (InfoNCE, cosine, batch 2048).
* ``rowwise800_epoch_s``: one epoch with 800 negatives per row (MINE+, cosine, batch 1024: the SimpleX / BSL
  layout); on the CPU 16 batches are timed (the median of the repeats) and scaled to the epoch.
* ``eval_s``: full-ranking evaluation (Recall/NDCG@20) of every test user.
* ``ials_iter_s``: one iALS iteration (users then items, 64 factors), when :mod:`recloss_lite.core.linear` provides it.
* ``hdccf_batch_s`` / ``hdccf_modulated_batch_s``: one HDCCF training step (sampling with its masks, loss,
  backward, optimiser) at the CLI preset (M = 256, P = 2), without and with the modulated similarity.
* with ``peers``: ``implicit_bpr_epoch_s`` and ``implicit_als_iter_s``, the `implicit` library's CPU BPR epoch (SGD)
  and ALS iteration (64 factors) on the same training matrix in the same run, and the ratios
  ``bpr_vs_implicit`` and ``ials_vs_implicit`` (ours / theirs). ``implicit`` is optional (``pip install
  recloss-lite[peers]``) and imported only here.
* with ``ease``: ``ease_fit_s``, one EASE fit (l2 as BARS: 80 on Gowalla); minutes on two cores, timed once.

``kernels`` says whether the compiled kernels of :mod:`recloss_lite.core.kernels` ran (the default where a C compiler is
found) or the PyTorch fallback did. Each figure is the median of ``repeats`` timed runs after one warm-up; the
machine's thread count is printed with them, because the figures depend on it (and on whatever else runs there:
compare with a peer measured in the same run).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from ..core import data, kernels, linear, metrics
from ..core.models import MF
from ..core.training import HDCCFTrainable, MFTrainable, TrainConfig, epoch_generator


def _median_seconds(run: Callable[[], object], repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def epoch_seconds(dataset: data.Dataset, config: TrainConfig, repeats: int = 3, batches: int | None = None) -> float:
    """Median wall time of one training epoch of MF on ``dataset.train`` with ``config``, as the driver runs it
    (:class:`MFTrainable` on ``config.device``). With ``batches``, only that many batches of the shuffled pairs
    are timed and the time is scaled to the whole epoch (for epochs of minutes)."""
    trainable = MFTrainable(config, dataset.train, dataset.n_users, dataset.n_items)
    scale = 1.0
    if batches is not None and batches * config.batch_size < len(trainable.users):
        pairs = batches * config.batch_size
        scale = len(trainable.users) / pairs
        keep = torch.randperm(len(trainable.users), generator=torch.Generator().manual_seed(0))[:pairs]
        trainable.users, trainable.items = (part[keep.to(part.device)] for part in (trainable.users, trainable.items))
    counter = iter(range(1, 10_000))
    return scale * _median_seconds(
        lambda: trainable.train_epoch(epoch_generator(config.seed, next(counter), config.device), None), repeats
    )


def hdccf_batch_seconds(
    dataset: data.Dataset, modulation: bool, batches: int = 20, batch_size: int = 256, num_positives: int = 2
) -> float:
    """Seconds per HDCCF training step on ``dataset.train``: (time of 1 + ``batches`` steps - time of 1 step) /
    ``batches``, so the one-off set-up of the sampler (membership tables) is not counted."""
    config = TrainConfig(
        dataset=dataset.name,
        model="hdccf",
        batch_size=batch_size,
        model_params={"tau": 0.5, "num_positives": num_positives, "modulation": modulation},
    )

    def steps(count: int) -> float:
        trainable = HDCCFTrainable(config, dataset.train, dataset.n_users, dataset.n_items, max_batches=count)
        start = time.perf_counter()
        trainable.train_epoch(epoch_generator(config.seed, 1), None)
        return time.perf_counter() - start

    return max(steps(1 + batches) - steps(1), 0.0) / batches


# The engine's targets on Gowalla per kind of device: seconds, or for the "_vs_implicit" figures the ratio to the peer
# measured in the same run (the machines are too noisy for absolute times alone). Printed beside each figure.
TARGETS = {
    "cpu": {
        "bpr_epoch_s": 0.5,
        "bpr_vs_implicit": 1.5,
        "shared800_epoch_s": 4.0,
        "rowwise800_epoch_s": 20.0,
        "eval_s": 4.0,
        "ials_vs_implicit": 1.0,
        "ease_fit_s": 400.0,
    },
    "cuda": {
        "bpr_epoch_s": 0.05,
        "shared800_epoch_s": 0.1,
        "rowwise800_epoch_s": 0.3,
        "eval_s": 0.15,
        "ials_iter_s": 0.05,
        "ease_fit_s": 20.0,
    },
}

TARGETS_DATASET = "gowalla"

# EASE's l2 per data set (BARS); others take EASE's default.
EASE_L2 = {"gowalla": 80.0, "yelp2018": 300.0, "amazon-book": 50.0}


def implicit_seconds(dataset: data.Dataset, repeats: int = 3) -> dict[str, float]:
    """Median seconds of the `implicit` library's CPU BPR epoch and ALS iteration (64 factors, one iteration per
    ``fit``, as many threads as torch uses, BLAS single-threaded inside ALS as implicit advises) on
    ``dataset.train``. ImportError where implicit is not installed."""
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    from threadpoolctl import threadpool_limits

    matrix = dataset.train.tocsr().astype("float32")
    threads = torch.get_num_threads()
    figures = {}
    with threadpool_limits(1, "blas"):
        for key, model in (
            ("implicit_bpr_epoch_s", BayesianPersonalizedRanking),
            ("implicit_als_iter_s", AlternatingLeastSquares),
        ):
            peer = model(factors=64, iterations=1, num_threads=threads, random_state=0)
            figures[key] = _median_seconds(lambda peer=peer: peer.fit(matrix, show_progress=False), repeats)
    return figures


def run_benchmarks(
    name: str = "gowalla",
    repeats: int = 3,
    device: str = "cpu",
    progress: bool = True,
    peers: bool = False,
    ease: bool = False,
) -> dict:
    """Measure every figure on data set ``name``; print each as it is measured when ``progress``, beside its target
    of :data:`TARGETS` on Gowalla. ``peers`` adds implicit's figures (measured first, in the same run), ``ease`` one
    EASE fit. The returned figures include ``targets``: {figure: {"target", "met"}} for those with a target."""
    dataset = data.load(name)
    figures: dict[str, Any] = {
        "dataset": name,
        "threads": torch.get_num_threads(),
        "device": device,
        "repeats": repeats,
        "kernels": "compiled" if kernels.library() else "pytorch",
    }
    if progress:
        print(f"{'kernels':>23}: {figures['kernels']} (RECLOSS_KERNELS=0 forces the PyTorch path)", flush=True)

    targets = TARGETS.get(torch.device(device).type, {}) if name == TARGETS_DATASET else {}
    checked: dict[str, dict[str, float | bool]] = {}

    def report(key: str, value: float, unit: str = "s") -> None:
        figures[key] = round(value, 4)
        verdict = ""
        if key in targets:
            checked[key] = {"target": targets[key], "met": value <= targets[key]}
            verdict = f"   target <= {targets[key]:g} {unit}: {'met' if checked[key]['met'] else 'missed'}"
        if progress:
            print(f"{key:>23}: {value:8.3f} {unit}{verdict}", flush=True)

    if peers:
        for key, value in implicit_seconds(dataset, repeats).items():
            report(key, value)
    bpr = TrainConfig(dataset=name, loss="bpr", batch_size=2048, num_negatives=1, device=device)
    report("bpr_epoch_s", epoch_seconds(dataset, bpr, repeats))
    shared = TrainConfig(
        dataset=name,
        loss="infonce",
        similarity="cosine",
        batch_size=2048,
        num_negatives=800,
        shared_negatives=True,
        device=device,
    )
    report("shared800_epoch_s", epoch_seconds(dataset, shared, repeats))
    rowwise = TrainConfig(
        dataset=name, loss="mine+", similarity="cosine", batch_size=1024, num_negatives=800, device=device
    )
    on_cpu = device == "cpu"  # there a sample of batches, timed as often as the others: the median is steadier
    report("rowwise800_epoch_s", epoch_seconds(dataset, rowwise, repeats if on_cpu else 1, 16 if on_cpu else None))
    model = MF(dataset.n_users, dataset.n_items, 64).to(device)
    report(
        "eval_s",
        _median_seconds(
            lambda: metrics.evaluate(lambda u: model.scores(u.to(device)).cpu(), dataset.train, dataset.test), repeats
        ),
    )
    report(
        "ials_iter_s",
        linear.bench_ials(dataset, factors=64, iterations=repeats, device=device)["seconds_per_iteration"],
    )
    if peers:
        report("bpr_vs_implicit", figures["bpr_epoch_s"] / figures["implicit_bpr_epoch_s"], "x")
        report("ials_vs_implicit", figures["ials_iter_s"] / figures["implicit_als_iter_s"], "x")
    report("hdccf_batch_s", hdccf_batch_seconds(dataset, modulation=False))
    report("hdccf_modulated_batch_s", hdccf_batch_seconds(dataset, modulation=True, batches=4))
    if ease:
        l2 = EASE_L2.get(name, linear.EASE().l2)
        start = time.perf_counter()
        linear.EASE(l2=l2, device=device).fit(dataset.train)
        report("ease_fit_s", time.perf_counter() - start)
    figures["targets"] = checked
    return figures
