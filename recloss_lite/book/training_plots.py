"""Studies and figures of trained models: learning curves, score distributions, sweeps (chapters 07-09).

Data functions return numpy arrays or plain dicts; figure functions return matplotlib Figures (never
``plt.show()``). Used by chapters 07_training, 08_score_distributions, 09_sensitivity and
:mod:`recloss_lite.book.live_widgets`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..core import data, metrics
from .plots import figure_grid


def score_samples(
    model, dataset: data.Dataset, max_users: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of test positives and of as many random non-interacted items per user (HDCCF fig. 3 style).

    For each user with test items (at most ``max_users``, drawn with ``seed``), the scores of its test items and
    of the same number of items drawn uniformly (with replacement) from the items in neither its train nor its
    test row. ``model`` has the ``scores(users (U,)) -> (U, n_items)`` contract. Returns (pos (P,), neg (P,)).
    Chapter 08_score_distributions.
    """
    rng = np.random.default_rng(seed)
    test = dataset.test.tocsr()
    seen = (dataset.train + dataset.test).tocsr()
    users = np.flatnonzero(np.diff(test.indptr))
    if max_users is not None and len(users) > max_users:
        users = np.sort(rng.choice(users, size=max_users, replace=False))
    pos_parts, neg_parts = [], []
    for start in range(0, len(users), 1024):
        batch = users[start : start + 1024]
        scores = model.scores(torch.from_numpy(batch.astype(np.int64))).numpy()
        for row, user in enumerate(batch):
            positives = test.indices[test.indptr[user] : test.indptr[user + 1]]
            unseen = np.setdiff1d(
                np.arange(dataset.n_items), seen.indices[seen.indptr[user] : seen.indptr[user + 1]], assume_unique=True
            )
            pos_parts.append(scores[row, positives])
            neg_parts.append(scores[row, rng.choice(unseen, size=len(positives))])
    return np.concatenate(pos_parts), np.concatenate(neg_parts)


def learning_curves(histories: dict[str, list[dict]], key: str = "recall@20") -> Figure:
    """Validation ``key`` per epoch, one line per label of ``histories`` (train.fit's ``history``); chapter
    07_training."""
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.subplots()
    styles = ["-", "--", ":", "-."]
    for index, (label, history) in enumerate(histories.items()):
        points = [(entry["epoch"], entry["valid"][key]) for entry in history if "valid" in entry]
        epochs, values = zip(*points, strict=True) if points else ((), ())
        ax.plot(epochs, values, styles[index // 10 % len(styles)], marker=".", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {key}")
    ax.set_title("Learning curves")
    ax.legend(fontsize=7, ncol=2)
    return fig


def draw_scores(ax, pos: np.ndarray, neg: np.ndarray, title: str, bins: int = 60) -> float:
    """Draw the two score densities (step lines) on ``ax`` with the overlap area in the title; return the area."""
    pos_mass, neg_mass, edges = metrics.shared_histograms(pos, neg, bins)
    width = edges[1] - edges[0]
    area = metrics.overlap_area(pos, neg, bins)
    ax.stairs(pos_mass / width, edges, label="test positives", color="tab:blue")
    ax.stairs(neg_mass / width, edges, label="random non-interacted", color="tab:red")
    ax.stairs(np.minimum(pos_mass, neg_mass) / width, edges, fill=True, color="grey", alpha=0.4, label="overlap")
    ax.set_title(f"{title}\noverlap {area:.3f}", fontsize=9)
    ax.set_xlabel("score")
    return area


def score_densities(samples: dict[str, tuple[np.ndarray, np.ndarray]], cols: int = 4) -> Figure:
    """One panel per label: the densities of positive vs negative scores and their overlap area (HDCCF fig. 3
    style); chapter 08_score_distributions."""
    fig, axes = figure_grid(len(samples), cols, width=3.4)
    for ax, (label, (pos, neg)) in zip(axes, samples.items(), strict=False):
        draw_scores(ax, pos, neg, label)
    axes[0].legend(fontsize=7)
    return fig


def sweeps(
    studies: dict[str, tuple[Sequence[float], Sequence[float]]], ylabel: str = "validation recall@20", cols: int = 3
) -> Figure:
    """One panel per swept parameter: the metric against the value, the best value marked with a star and named
    in the title (chapter 09_sensitivity). ``studies``: label -> (values, metric values)."""
    fig, axes = figure_grid(len(studies), cols, width=3.4)
    for ax, (label, (values, scores)) in zip(axes, studies.items(), strict=False):
        best = int(np.argmax(scores))
        ax.plot(values, scores, marker="o", label=label)
        ax.plot(
            [values[best]], [scores[best]], marker="*", markersize=14, color="tab:red", linestyle="none", label="best"
        )
        ax.set_title(f"{label}: best {values[best]:g}", fontsize=9)
        if min(values) > 0 and max(values) / min(values) >= 10:  # e.g. the number of negatives
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(ylabel)
    return fig
