"""The figures of the training chapters (07-09): score samples, densities with their overlap, learning curves and
sweeps. Generated data and a tiny MF model: these never skip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recloss_lite.book import training_plots
from recloss_lite.core import metrics
from recloss_lite.core.models import MF


def test_score_samples_pair_each_test_positive_with_an_unseen_item(toy) -> None:
    model = MF(toy.n_users, toy.n_items, 8, seed=0)
    pos, neg = training_plots.score_samples(model, toy, max_users=30, seed=1)
    assert pos.shape == neg.shape and 0 < len(pos) <= toy.test.nnz
    scores = model.scores(torch.arange(toy.n_users)).detach().numpy()
    test, seen = toy.test.tocsr(), (toy.train + toy.test).tocsr()
    positive_scores = {float(scores[u, i]) for u in range(toy.n_users) for i in test[u].indices}
    unseen_scores = {
        float(scores[u, i]) for u in range(toy.n_users) for i in range(toy.n_items) if i not in set(seen[u].indices)
    }
    assert set(pos.tolist()) <= positive_scores and set(neg.tolist()) <= unseen_scores
    again = training_plots.score_samples(model, toy, max_users=30, seed=1)
    assert np.array_equal(again[0], pos) and np.array_equal(again[1], neg)  # a function of the seed


def test_score_densities_draw_one_panel_per_loss_titled_with_its_overlap() -> None:
    rng = np.random.default_rng(0)
    samples = {
        "near": (rng.normal(size=400), rng.normal(0.2, size=400)),
        "apart": (rng.normal(size=400), rng.normal(8.0, size=400)),
    }
    fig = training_plots.score_densities(samples, cols=4)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 2
    for ax, (pos, neg) in zip(visible, samples.values(), strict=True):
        assert f"overlap {metrics.overlap_area(pos, neg, bins=60):.3f}" in ax.get_title()
    assert float(visible[1].get_title().split()[-1]) < 0.05 < float(visible[0].get_title().split()[-1])


def test_learning_curves_plot_the_validated_epochs_only() -> None:
    history = [{"epoch": 1, "valid": {"recall@20": 0.1}}, {"epoch": 2}, {"epoch": 3, "valid": {"recall@20": 0.2}}]
    fig = training_plots.learning_curves({"bpr": history, "empty": []})
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["bpr"].get_xdata()) == [1, 3] and list(lines["bpr"].get_ydata()) == pytest.approx([0.1, 0.2])
    assert len(lines["empty"].get_xdata()) == 0


def test_sweeps_mark_and_name_the_best_value() -> None:
    fig = training_plots.sweeps(
        {"tau": ([0.05, 0.1, 0.2], [0.10, 0.15, 0.12]), "negatives": ([1, 10, 100], [0.1, 0.2, 0.3])}
    )
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["tau: best 0.1", "negatives: best 100"]
    assert visible[1].get_xscale() == "log" and visible[0].get_xscale() == "linear"
