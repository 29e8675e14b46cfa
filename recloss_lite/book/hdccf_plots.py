"""Figures of chapter 10_hdccf: the in-batch negative counts of Propositions 1-2 and the paper's figures 2-4
(ablations, modulation histograms, hyper-parameter sensitivity).

Data in, :class:`matplotlib.figure.Figure` out, built without pyplot (never ``plt.show()``). The counts come from
``core.hdccf.negative_counts`` and the runs from ``experiments.ablations``; the chapter computes, these draw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .plots import figure_grid

DEGREE_LABELS = {"item": r"$|\mathcal{U}_{i'}|$", "user": r"$|\mathcal{I}_{u'}|$"}
METRICS = ("hr@10", "ndcg@10")


def propositions(counts: Mapping[str, np.ndarray | float]) -> tuple[Figure, dict[str, float]]:
    """How often each item (left) and user (right) is a row's in-batch negative, against its degree, with the
    line of Propositions 1-2.

    ``counts`` is ``hdccf.negative_counts``'s dict: ``item_degree`` / ``item_counts`` (n_items,),
    ``user_degree`` / ``user_counts`` (n_users,) and the predicted ``slope`` P(M-1)/(|D|-1). Returns the figure
    and the least-squares slope through the origin of each side, ``{"item": ..., "user": ...}``, which the
    panel titles show next to the prediction in the legend. Chapter 10_hdccf.
    """
    fig, axes = figure_grid(2, 2, width=4.5, height=3.4)
    fitted = {}
    for ax, side in zip(axes, ("item", "user"), strict=True):
        degree = np.asarray(counts[f"{side}_degree"], dtype=np.float64)
        count = np.asarray(counts[f"{side}_counts"], dtype=np.float64)
        fitted[side] = float(degree @ count / (degree @ degree))
        ax.scatter(degree, count, s=4, alpha=0.4, label="measured")
        line = np.linspace(0, degree.max(), 50)
        ax.plot(
            line,
            counts["slope"] * line,
            color="C3",
            label=rf"$P(M-1)/(|\mathcal{{D}}|-1)$ slope {counts['slope']:.3e}",
        )
        ax.set_title(f"{side}s: least-squares slope {fitted[side]:.3e}", fontsize=9)
        ax.set_xlabel(DEGREE_LABELS[side])
        ax.set_ylabel(f"times a negative {side} per row")
        ax.legend(fontsize=8)
    return fig, fitted


def ablation_bars(ablation: Mapping[str, Mapping[str, float]], metrics: Sequence[str] = METRICS) -> Figure:
    """One panel per metric: a bar per variant (``label -> {metric: value}``, the first one, the full model, in
    red), each bar labelled with its value. Leave-one-out metrics among 100 candidates (the paper's figure 2).

    Chapter 10_hdccf.
    """
    fig, axes = figure_grid(len(metrics), len(metrics), width=4.5, height=3.0)
    colours = ["C3"] + ["C0"] * (len(ablation) - 1)
    for ax, key in zip(axes, metrics, strict=True):
        bars = ax.bar(list(ablation), [row[key] for row in ablation.values()], color=colours)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
        ax.set_ylabel(f"{key.upper()} (100 candidates)")
        ax.tick_params(axis="x", rotation=30)
    return fig


def modulation(histograms: Mapping[str, Mapping[str, Sequence[float]]], overlaps: Mapping[str, float]) -> Figure:
    """Histograms of positive and negative scores normalised to [0, 100], one panel per model (the paper's
    figure 3), with a shared y axis.

    ``histograms``: ``name -> {"positive": (B,), "negative": (B,)}`` masses over B equal bins (each run's
    ``histograms`` of ``ablations.run``); ``overlaps``: ``name -> shared area``, shown in the panel's title.
    Chapter 10_hdccf.
    """
    fig, axes = figure_grid(len(histograms), len(histograms), width=4.5, height=3.0)
    for ax in axes[1:]:
        ax.sharey(axes[0])
        ax.tick_params(labelleft=False)
    for ax, (name, masses) in zip(axes, histograms.items(), strict=True):
        bins = len(masses["positive"])
        centres = (np.arange(bins) + 0.5) * 100 / bins
        for label in ("positive", "negative"):
            ax.bar(centres, np.asarray(masses[label], dtype=np.float64), width=100 / bins, alpha=0.5, label=label)
        ax.set_title(f"{name}: overlap {overlaps[name]:.3f}")
        ax.set_xlabel("normalised score")
    axes[0].set_ylabel("share of pairs")
    axes[0].legend()
    return fig


def sensitivity(sweeps: Mapping[str, Mapping[float, Mapping[str, float]]], metrics: Sequence[str] = METRICS) -> Figure:
    """One panel per swept hyper-parameter (``axis label -> {value: {metric: value}}``, values in order): each
    metric against the value (the paper's figure 4); the title names the value with the best first metric.

    Chapter 10_hdccf.
    """
    fig, axes = figure_grid(len(sweeps), len(sweeps), width=4.5, height=3.0)
    for ax, (label, found) in zip(axes, sweeps.items(), strict=True):
        values = list(found)
        for metric in metrics:
            ax.plot(values, [row[metric] for row in found.values()], marker="o", label=metric.upper())
        best = max(values, key=lambda value: found[value][metrics[0]])
        ax.set_title(f"best {metrics[0].upper()} at {label} = {best:g}", fontsize=9)
        ax.set_xlabel(label)
        ax.legend()
    return fig
