"""The figures of chapter 10_hdccf (recloss_lite.book.hdccf_plots): Propositions 1-2 counts, ablation bars,
modulation histograms and sensitivity sweeps draw exactly the numbers given. Generated inputs; these never skip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba

from recloss_lite.book import hdccf_plots
from recloss_lite.core import hdccf, metrics


def _visible(fig) -> list:
    return [ax for ax in fig.axes if ax.get_visible()]


def _finite(fig) -> bool:
    FigureCanvasAgg(fig).draw()
    for ax in fig.axes:
        for line in ax.lines:
            if not (np.isfinite(line.get_xdata()).all() and np.isfinite(line.get_ydata()).all()):
                return False
        for patch in ax.patches:
            if not np.isfinite([patch.get_x(), patch.get_width(), patch.get_height()]).all():
                return False
        for collection in ax.collections:
            if not np.isfinite(collection.get_offsets()).all():
                return False
    return True


def test_propositions_scatter_the_counts_with_the_predicted_line_and_return_the_fitted_slopes(toy) -> None:
    counts = hdccf.negative_counts(toy.train, 16, 2, 20, torch.Generator().manual_seed(0))
    fig, fitted = hdccf_plots.propositions(counts)
    axes = _visible(fig)
    assert len(axes) == 2 and _finite(fig)
    for ax, side in zip(axes, ("item", "user"), strict=True):
        degree, count = counts[f"{side}_degree"], counts[f"{side}_counts"]
        assert fitted[side] == pytest.approx(float(degree @ count / (degree @ degree)), rel=1e-12)
        assert np.array_equal(ax.collections[0].get_offsets(), np.column_stack([degree, count]))
        (line,) = ax.lines
        assert np.allclose(line.get_ydata(), counts["slope"] * np.asarray(line.get_xdata()))
        assert line.get_xdata()[0] == 0 and line.get_xdata()[-1] == degree.max()
        assert f"{fitted[side]:.3e}" in ax.get_title() and f"{counts['slope']:.3e}" in line.get_label()
        assert ax.get_ylabel() == f"times a negative {side} per row"
    # the counts follow the predicted slope (Proposition 1), as the chapter shows at scale
    assert fitted["item"] == pytest.approx(counts["slope"], rel=0.2)


def test_propositions_least_squares_slope_through_the_origin() -> None:
    counts = {
        "item_degree": np.array([1.0, 2.0, 4.0]),
        "item_counts": np.array([0.5, 1.0, 2.0]),
        "user_degree": np.array([1.0, 3.0]),
        "user_counts": np.array([1.0, 1.0]),
        "slope": 0.5,
    }
    _, fitted = hdccf_plots.propositions(counts)
    assert fitted == pytest.approx({"item": 0.5, "user": 0.4})  # (1 + 3) / (1 + 9)


def test_ablation_bars_draw_one_bar_per_variant_with_its_value() -> None:
    ablation = {
        "HDCCF": {"hr@10": 0.61, "ndcg@10": 0.35},
        "w/o U": {"hr@10": 0.58, "ndcg@10": 0.33},
        "BPR+": {"hr@10": 0.52, "ndcg@10": 0.29},
    }
    fig = hdccf_plots.ablation_bars(ablation, ("hr@10", "ndcg@10"))
    axes = _visible(fig)
    assert len(axes) == 2 and _finite(fig)
    for ax, key in zip(axes, ("hr@10", "ndcg@10"), strict=True):
        heights = [patch.get_height() for patch in ax.patches]
        assert heights == [row[key] for row in ablation.values()]
        assert [tick.get_text() for tick in ax.get_xticklabels()] == list(ablation)
        assert [text.get_text() for text in ax.texts] == [f"{row[key]:.3f}" for row in ablation.values()]
        assert [patch.get_facecolor() for patch in ax.patches] == [to_rgba("C3"), to_rgba("C0"), to_rgba("C0")]
        assert ax.get_ylabel() == f"{key.upper()} (100 candidates)"


def test_modulation_draws_the_histogram_masses_on_a_shared_axis_with_the_overlaps() -> None:
    rng = np.random.default_rng(0)
    histograms, overlaps = {}, {}
    for name, shift in (("with modulation", 3.0), ("without modulation", 0.5)):
        pos, neg = rng.normal(shift, size=300), rng.normal(size=300)
        positive, negative, _ = metrics.shared_histograms(pos, neg, 20)
        histograms[name] = {"positive": positive.tolist(), "negative": negative.tolist()}
        overlaps[name] = metrics.overlap_area(pos, neg, 20)
    fig = hdccf_plots.modulation(histograms, overlaps)
    axes = _visible(fig)
    assert len(axes) == 2 and _finite(fig)
    assert axes[0].get_shared_y_axes().joined(axes[0], axes[1])
    for ax, (name, masses) in zip(axes, histograms.items(), strict=True):
        bars = ax.patches
        assert len(bars) == 40
        positive, negative = bars[:20], bars[20:]
        assert np.allclose([bar.get_height() for bar in positive], masses["positive"])
        assert np.allclose([bar.get_height() for bar in negative], masses["negative"])
        assert sum(bar.get_height() for bar in positive) == pytest.approx(1.0)
        assert np.allclose([bar.get_x() for bar in positive], np.arange(20) * 5.0)  # 20 bins over [0, 100]
        assert all(bar.get_width() == pytest.approx(5.0) for bar in bars)
        assert ax.get_title() == f"{name}: overlap {overlaps[name]:.3f}"
    assert overlaps["with modulation"] < overlaps["without modulation"]
    assert [text.get_text() for text in axes[0].get_legend().get_texts()] == ["positive", "negative"]


def test_sensitivity_plots_each_metric_against_the_swept_values_and_names_the_best() -> None:
    sweeps = {
        r"$\omega^+$": {0.0: {"hr@10": 0.50, "ndcg@10": 0.30}, 0.05: {"hr@10": 0.55, "ndcg@10": 0.31}},
        "$P$": {
            1: {"hr@10": 0.52, "ndcg@10": 0.32},
            2: {"hr@10": 0.51, "ndcg@10": 0.30},
            4: {"hr@10": 0.49, "ndcg@10": 0.28},
        },
    }
    fig = hdccf_plots.sensitivity(sweeps, ("hr@10", "ndcg@10"))
    axes = _visible(fig)
    assert len(axes) == 2 and _finite(fig)
    for ax, (label, found) in zip(axes, sweeps.items(), strict=True):
        assert [line.get_label() for line in ax.lines] == ["HR@10", "NDCG@10"]
        for line, metric in zip(ax.lines, ("hr@10", "ndcg@10"), strict=True):
            assert list(line.get_xdata()) == list(found)
            assert list(line.get_ydata()) == [row[metric] for row in found.values()]
        assert ax.get_xlabel() == label
    assert axes[0].get_title() == r"best HR@10 at $\omega^+$ = 0.05"
    assert axes[1].get_title() == "best HR@10 at $P$ = 1"
